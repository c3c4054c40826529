"""Loom's kernel: agents as asyncio tasks on a ZeroMQ bus with wildcard topics.

What users write comes from here; everything else is in the submodules.
"""

from .agent import Agent, on_event, tool
from .bus import BusAddress
from .client import Subscription
from .collaboration import BarrierTimeout, ContractResult, FanInResult
from .config import LoomConfig, load_config
from .context import Context
from .envelope import Envelope
from .errors import (
    BusError,
    ConfigError,
    LLMError,
    LLMTimeout,
    LoomError,
    LoomTimeoutError,
    MemoryQueryError,
    RemoteError,
    RequestTimeout,
    ToolError,
    ToolTimeout,
    TopicError,
)
from .llm import LLMProvider, LLMResponse, ToolCall, Usage
from .memory import Memory, MemoryItem
from .runtime import Runtime, open_runtime, run
from .span_store import SpanStore
from .tools import ToolInfo
from .topics import topic_matches

capability = tool  # the SPEC's alias: @capability("name") is @tool("name")

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "BarrierTimeout",
    "BusAddress",
    "BusError",
    "ConfigError",
    "Context",
    "ContractResult",
    "Envelope",
    "FanInResult",
    "LLMError",
    "LLMProvider",
    "LLMResponse",
    "LLMTimeout",
    "LoomConfig",
    "LoomError",
    "LoomTimeoutError",
    "Memory",
    "MemoryItem",
    "MemoryQueryError",
    "RemoteError",
    "RequestTimeout",
    "Runtime",
    "SpanStore",
    "Subscription",
    "ToolCall",
    "ToolError",
    "ToolInfo",
    "ToolTimeout",
    "TopicError",
    "Usage",
    "__version__",
    "capability",
    "load_config",
    "on_event",
    "open_runtime",
    "run",
    "tool",
    "topic_matches",
]
