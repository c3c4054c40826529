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
    LoomError,
    LoomTimeoutError,
    RemoteError,
    RequestTimeout,
    ToolError,
    TopicError,
)
from .runtime import Runtime, open_runtime, run
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
    "LoomConfig",
    "LoomError",
    "LoomTimeoutError",
    "RemoteError",
    "RequestTimeout",
    "Runtime",
    "Subscription",
    "ToolError",
    "TopicError",
    "__version__",
    "capability",
    "load_config",
    "on_event",
    "open_runtime",
    "run",
    "tool",
    "topic_matches",
]
