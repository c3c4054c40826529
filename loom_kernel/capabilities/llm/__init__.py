"""LLM providers: ``ctx.llm(name)`` for ``[llm.<name>]`` or ``[router]`` of ``loom.toml``.

- :class:`LLMProvider`: the interface (complete, structured, stream, tools, usage);
- :class:`ModelProvider`: one model; :class:`RouterProvider`: litellm's Router over
  several, with a cost, latency, usage or simple strategy;
- :func:`provider_for`: the provider a name means.
"""

from .factory import provider_for
from .model import ModelProvider
from .provider import ROUTER, LLMCaller, LLMProvider, LLMStream, Messages
from .router import STRATEGIES, RouterProvider
from .types import LLMResponse, LLMStatistics, ToolCall, Usage

__all__ = [
    "ROUTER",
    "STRATEGIES",
    "LLMCaller",
    "LLMProvider",
    "LLMResponse",
    "LLMStatistics",
    "LLMStream",
    "Messages",
    "ModelProvider",
    "RouterProvider",
    "ToolCall",
    "Usage",
    "provider_for",
]
