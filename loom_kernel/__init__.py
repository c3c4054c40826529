"""Loom's kernel: agents as asyncio tasks on a ZeroMQ bus with wildcard topics.

What users write comes from here. The kernel is built in layers, each a subpackage
that imports only the ones below it (``docs/ARCHITECTURE.md``)::

    cli → ops → runtime → agents → capabilities → messaging → tracing → bus → protocol

with :mod:`loom_kernel.config` and :mod:`loom_kernel.errors` under them all.
"""

from . import _compat
from ._version import __version__
from .agents import Agent, Context, on_event, tool
from .bus import BusAddress, Subscription
from .capabilities import LLMProvider, LLMResponse, Memory, MemoryItem, ToolCall, ToolInfo, Usage
from .config import LoomConfig, load_config
from .errors import (
    BusError,
    ConfigError,
    HandlerTimeout,
    LLMError,
    LLMTimeout,
    LoomError,
    LoomTimeoutError,
    MemoryQueryError,
    ReloadError,
    RemoteError,
    RequestTimeout,
    ToolError,
    ToolTimeout,
    TopicError,
)
from .messaging import BarrierTimeout, ContractResult, Endpoint, FanInResult
from .protocol import Envelope, topic_matches
from .runtime import Runtime, open_runtime, run
from .tracing import SpanStore

_compat.install()

capability = tool  # the SPEC's alias: @capability("name") is @tool("name")

__all__ = [
    "Agent",
    "BarrierTimeout",
    "BusAddress",
    "BusError",
    "ConfigError",
    "Context",
    "ContractResult",
    "Endpoint",
    "Envelope",
    "FanInResult",
    "HandlerTimeout",
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
    "ReloadError",
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
