"""What an agent can use beyond the bus, gathered for one runtime.

:class:`Capabilities` holds the process's action broker (tools, MCP servers), its
memory store and the LLM settings, and hands each agent its own view: a
:class:`~.memory.Memory` under its id, LLM providers whose spans and usage reports
carry its id, and tool calls made from its endpoint. The agent's context is built on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..config import LoomConfig
from ..messaging.endpoint import Endpoint
from ..tracing.tracer import NO_TRACER, Tracer
from .actions import ActionBroker
from .llm import LLMCaller, LLMProvider, provider_for
from .memory import Memory, MemoryStore

__all__ = ["Capabilities"]


class Capabilities:
    """Tools, LLMs and memory of one runtime, for its agents.

    Args:
        config: ``loom.toml`` (the ``[llm.*]``, ``[router]`` and ``[memory]`` sections).
        actions: the process's action broker.
        memory_store: opens the project's long-term memory on first use.
        tracer: what LLM calls record their spans with.
    """

    def __init__(
        self,
        config: LoomConfig,
        actions: ActionBroker,
        memory_store: Callable[[], MemoryStore],
        *,
        tracer: Tracer = NO_TRACER,
    ):
        self.config = config
        self.actions = actions
        self.memory_store = memory_store
        self.tracer = tracer

    def memory(self, agent_id: str) -> Memory:
        """The memory of one agent (short-term here, long-term in the shared store)."""
        settings = self.config.memory
        return Memory(
            self.memory_store(),
            agent_id,
            short_term_size=settings.short_term_size,
            default_ttl=settings.default_ttl_sec,
        )

    def llm(self, endpoint: Endpoint, name: str) -> LLMProvider:
        """A provider for ``[llm.<name>]`` (or ``router``) called from ``endpoint``.

        Raises:
            LLMError: no such entry; the message shows what to add.
        """

        def report(topic: str, data: dict[str, Any]) -> None:
            endpoint.report(topic, data, type="llm")

        async def list_tools() -> Any:
            return await self.actions.tools(endpoint)

        caller = LLMCaller(
            agent=endpoint.source, tracer=self.tracer, report=report, list_tools=list_tools
        )
        return provider_for(self.config, name, caller=caller)

    async def tool(
        self,
        endpoint: Endpoint,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Call a tool from ``endpoint`` (see :meth:`ActionBroker.call`)."""
        return await self.actions.call(endpoint, name, args, timeout=timeout)
