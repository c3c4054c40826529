"""The capabilities layer: what agents use beyond publish and subscribe.

- :mod:`.tools`: tool signatures (JSON schemas from type hints, argument checks);
- :mod:`.actions`: the action broker, one ``ctx.tool(name)`` for agent and MCP tools;
- :mod:`.mcp_servers`: ``[mcp.*]`` servers through the ``mcp`` SDK;
- :mod:`.llm`: LLM providers over litellm, and the router as a provider of its own;
- :mod:`.memory`: short-term and long-term (SQLite) memory;
- :mod:`.toolkit`: :class:`Capabilities`, the per-runtime bundle agents are given.

Imports the messaging, tracing, bus and protocol layers below it.
"""

from .actions import ActionBroker, ToolStatistics, list_mcp_tools
from .llm import (
    LLMCaller,
    LLMProvider,
    LLMResponse,
    LLMStatistics,
    LLMStream,
    ModelProvider,
    RouterProvider,
    ToolCall,
    Usage,
    provider_for,
)
from .mcp_servers import MCPServer, MCPServerStatistics
from .memory import DecisionStats, Memory, MemoryItem, MemoryStatistics, MemoryStore
from .toolkit import Capabilities
from .tools import ToolInfo, ToolSignature, check_arguments, load_validator

__all__ = [
    "ActionBroker",
    "Capabilities",
    "DecisionStats",
    "LLMCaller",
    "LLMProvider",
    "LLMResponse",
    "LLMStatistics",
    "LLMStream",
    "MCPServer",
    "MCPServerStatistics",
    "Memory",
    "MemoryItem",
    "MemoryStatistics",
    "MemoryStore",
    "ModelProvider",
    "RouterProvider",
    "ToolCall",
    "ToolInfo",
    "ToolSignature",
    "ToolStatistics",
    "Usage",
    "check_arguments",
    "list_mcp_tools",
    "load_validator",
    "provider_for",
]
