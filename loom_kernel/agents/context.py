"""The ``Context`` a handler receives: how an agent talks to the rest of the system.

A thin facade: messaging goes to the agent's
:class:`~loom_kernel.messaging.Endpoint`, tools, LLMs and memory to the runtime's
:class:`~loom_kernel.capabilities.Capabilities`.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

from ..bus.transport import Subscription, Transport
from ..capabilities.llm import LLMProvider
from ..capabilities.memory import Memory
from ..capabilities.toolkit import Capabilities
from ..config import LoomConfig
from ..errors import LoomError
from ..messaging import collaboration
from ..messaging.endpoint import Endpoint
from ..protocol import reserved
from ..protocol.envelope import Envelope
from ..protocol.spans import Span

__all__ = ["AgentLogger", "Context"]


class AgentLogger(logging.LoggerAdapter):
    """A logger that also publishes INFO-and-above records on ``loom.log.<agent>``."""

    def __init__(self, logger: logging.Logger, endpoint: Endpoint):
        super().__init__(logger, {"agent": endpoint.source})
        self._endpoint = endpoint

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(level, msg, *args, **kwargs)
        if level < logging.INFO:
            return
        text = str(msg) % args if args else str(msg)
        if kwargs.get("exc_info"):
            text = f"{text}\n{traceback.format_exc()}"
        # If the bus is closing, the record still went to Python logging.
        with contextlib.suppress(LoomError):
            self._endpoint.report(
                reserved.log(self._endpoint.source),
                {"level": logging.getLevelName(level), "message": text},
                type="log",
            )


class Context:
    """Everything an agent can do, passed to every handler and hook.

    Attributes:
        agent_id: the agent's id (its ``source`` on every event it emits).
        endpoint: its place on the bus (publish, request, reply, subscribe).
        config: the project's ``loom.toml`` settings.
        log: a logger whose INFO+ records also travel on ``loom.log.<agent_id>``.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        capabilities: Capabilities,
        config: LoomConfig,
        *,
        host: Any = None,
    ):
        self.endpoint = endpoint
        self.capabilities = capabilities
        self.config = config
        self.agent_id = endpoint.source
        self.inbox = endpoint.inbox
        self.log = AgentLogger(logging.getLogger(f"loom.agent.{self.agent_id}"), endpoint)
        self._host = host
        self._llms: dict[str, LLMProvider] = {}
        self._memory: Memory | None = None

    @property
    def emitted(self) -> int:
        """Events this agent has emitted (its own reports not counted)."""
        return self.endpoint.emitted

    @property
    def last_emit(self) -> float:
        """``time.monotonic()`` of its last emit (0.0: none yet)."""
        return self.endpoint.last_emit

    @property
    def settings(self) -> dict[str, Any]:
        """This agent's ``[agents.<id>.settings]`` from ``loom.toml`` (empty if none)."""
        entry = self.config.agents.get(self.agent_id)
        return dict(entry.settings) if entry else {}

    @property
    def transport(self) -> Transport:
        """The process's connection to the bus."""
        return self.endpoint.transport

    @property
    def runtime(self) -> Any:
        """Deprecated: the runtime running this agent. Use ``ctx.config`` for settings,
        ``ctx.span(...)`` for spans, and the runtime object you opened for the rest."""
        warnings.warn(
            "ctx.runtime is deprecated and goes in the next release: use ctx.config for "
            "loom.toml settings and ctx.span(...) for spans",
            DeprecationWarning,
            stacklevel=2,
        )
        return self._host

    # -- capabilities: memory, LLMs and tools ----------------------------------------

    @property
    def memory(self) -> Memory:
        """This agent's memory: short-term items in process, long-term in the project's
        SQLite store (``[memory] path``), shared by every process. See docs/memory.md."""
        if self._memory is None:
            self._memory = self.capabilities.memory(self.agent_id)
        return self._memory

    def llm(self, name: str) -> LLMProvider:
        """The model ``[llm.<name>]`` of ``loom.toml`` (or ``"router"`` for ``[router]``).

        Raises:
            LLMError: no such entry; the message shows what to add.
        """
        provider = self._llms.get(name)
        if provider is None:
            provider = self._llms[name] = self.capabilities.llm(self.endpoint, name)
        return provider

    async def tool(
        self,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
    ) -> Any:
        """Call a tool: an agent's ``@tool`` in any process, or an MCP server's tool.

        ``name`` is the tool's name, or ``<server>.<tool>`` for a server declared as
        ``[mcp.<server>]`` in ``loom.toml`` (started on first use). Returns the tool's
        result: an agent tool's return value; an MCP tool's structured content, else
        its text.

        Args:
            timeout: seconds to wait (default 10 s for agent tools, ``[mcp.*] timeout_sec``
                for MCP tools).

        Raises:
            ToolError: no such tool, wrong arguments (the message names the field), or
                the tool failed.
            ToolTimeout: no answer in time (also a ``ToolError`` and a ``TimeoutError``).
        """
        return await self.capabilities.tool(self.endpoint, name, args, timeout=timeout)

    # -- messaging -------------------------------------------------------------------

    async def emit(
        self,
        topic: str,
        data: Any = None,
        *,
        ttl_ms: int = 0,
        thread_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Envelope:
        """Publish ``data`` on ``topic``; returns the envelope sent.

        ``data`` is JSON-compatible values, a dataclass, a pydantic model, or bytes.
        Inside a handler the new event continues the handled event's thread.

        Raises:
            TopicError: ``topic`` is not a valid concrete topic.
            TypeError: ``data`` cannot be encoded.
        """
        return await self.endpoint.emit(
            topic, data, ttl_ms=ttl_ms, thread_id=thread_id, headers=headers
        )

    async def request(self, topic: str, data: Any = None, *, timeout: float = 5.0) -> Envelope:
        """Publish a request and wait for the first reply (any process may answer).

        Raises:
            RequestTimeout: no reply within ``timeout`` seconds.
            RemoteError: the responder's handler raised (its error is in the message).
        """
        return await self.endpoint.request(topic, data, timeout=timeout)

    async def reply(self, event: Envelope, data: Any = None, *, type: str = "reply") -> Envelope:
        """Answer ``event`` (a request, award or cfp): the reply goes to its ``reply_to``.

        Raises :class:`LoomError` when the event expects no reply.
        """
        return await self.endpoint.reply(event, data, type=type)

    async def subscribe(
        self,
        pattern: str,
        *,
        qos: str = "reliable",
        mailbox_size: int | None = None,
        max_size: int = 100,
        max_delay: float = 0.05,
    ) -> Subscription:
        """A subscription owned by this agent (closed when it stops); iterate it for events.

        ``qos``, ``mailbox_size``, ``max_size`` and ``max_delay`` mean what they mean for
        :func:`~loom_kernel.agents.on_event`. Returns once the subscription is live.
        """
        return await self.endpoint.subscribe(
            pattern, qos=qos, mailbox_size=mailbox_size, max_size=max_size, max_delay=max_delay
        )

    @contextlib.contextmanager
    def span(
        self, name: str, *, kind: str = "internal", attributes: dict[str, Any] | None = None
    ) -> Iterator[Span | None]:
        """A span of this agent around a block, child of the handler's span (None when
        tracing is off). It is an error span if the block raises.

        >>> with ctx.span("score", attributes={"symbol": "AAPL"}) as span:  # doctest: +SKIP
        ...     if span is not None:
        ...         span.set_attribute("score", 0.7)
        """
        with self.endpoint.tracer.span(
            name, kind, agent=self.agent_id, attributes=attributes
        ) as span:
            yield span

    # -- collaboration patterns (see loom_kernel.messaging.collaboration) -------------

    async def fan_out(self, *args: Any, **kwargs: Any) -> collaboration.FanInResult:
        """See :func:`loom_kernel.messaging.collaboration.fan_out`."""
        return await collaboration.fan_out(self.endpoint, *args, **kwargs)

    async def fan_in(self, *args: Any, **kwargs: Any) -> collaboration.FanInResult:
        """See :func:`loom_kernel.messaging.collaboration.fan_in`."""
        return await collaboration.fan_in(self.endpoint, *args, **kwargs)

    async def barrier(self, *args: Any, **kwargs: Any) -> list[str]:
        """See :func:`loom_kernel.messaging.collaboration.barrier`."""
        return await collaboration.barrier(self.endpoint, *args, **kwargs)

    async def contract_net(self, *args: Any, **kwargs: Any) -> collaboration.ContractResult:
        """See :func:`loom_kernel.messaging.collaboration.contract_net`."""
        return await collaboration.contract_net(self.endpoint, *args, **kwargs)

    async def bid(self, *args: Any, **kwargs: Any) -> Envelope | None:
        """See :func:`loom_kernel.messaging.collaboration.bid`."""
        return await collaboration.bid(self.endpoint, *args, **kwargs)

    async def aclose(self) -> None:
        """Close the subscriptions this agent made with :meth:`subscribe`."""
        await self.endpoint.aclose()

    def __repr__(self) -> str:
        return f"<Context {self.agent_id!r}>"
