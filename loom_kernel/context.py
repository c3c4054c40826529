"""The ``Context`` a handler receives: how an agent talks to the rest of the system."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from . import collaboration
from .envelope import Envelope, encode_data, new_id
from .errors import LoomError, RemoteError, RequestTimeout
from .spans import Span, parse_traceparent
from .topics import validate_topic

if TYPE_CHECKING:
    from .client import BusClient, Subscription
    from .llm import LLMProvider
    from .memory import Memory
    from .runtime import Runtime

__all__ = ["Context", "current_event"]

#: The event whose handler is running (None outside handlers). Emits inherit its
#: thread id and hop count, so causal chains stay linked across agents.
current_event: ContextVar[Envelope | None] = ContextVar("loom_current_event", default=None)
TOOL_PREFIX = "loom.tool."


class AgentLogger(logging.LoggerAdapter):
    """A logger that also publishes INFO-and-above records on ``loom.log.<agent>``."""

    def __init__(self, logger: logging.Logger, ctx: Context):
        super().__init__(logger, {"agent": ctx.agent_id})
        self._ctx = ctx

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(level, msg, *args, **kwargs)
        if level < logging.INFO:
            return
        text = str(msg) % args if args else str(msg)
        if kwargs.get("exc_info"):
            text = f"{text}\n{traceback.format_exc()}"
        # If the bus is closing, the record still went to Python logging.
        with contextlib.suppress(LoomError):
            self._ctx._publish(
                f"loom.log.{self._ctx.agent_id}",
                {"level": logging.getLevelName(level), "message": text},
                type="log",
                count=False,
            )


class Context:
    """Everything an agent can do, passed to every handler and hook.

    Attributes:
        agent_id: the agent's id (its ``source`` on every event it emits).
        runtime: the :class:`~loom_kernel.runtime.Runtime` running it.
        log: a logger whose INFO+ records also travel on ``loom.log.<agent_id>``.
    """

    def __init__(self, runtime: Runtime, agent_id: str):
        self.runtime = runtime
        self.agent_id = agent_id
        self.inbox = runtime.client.inbox(agent_id)
        self.log = AgentLogger(logging.getLogger(f"loom.agent.{agent_id}"), self)
        self.emitted = 0
        self.last_emit = 0.0
        self._subscriptions: list[Subscription] = []
        self._llms: dict[str, LLMProvider] = {}
        self._memory: Memory | None = None

    @property
    def client(self) -> BusClient:
        return self.runtime.client

    @property
    def settings(self) -> dict[str, Any]:
        """This agent's ``[agents.<id>.settings]`` from ``loom.toml`` (empty if none)."""
        entry = self.runtime.config.agents.get(self.agent_id)
        return dict(entry.settings) if entry else {}

    # -- capabilities: memory and LLMs -----------------------------------------------

    @property
    def memory(self) -> Memory:
        """This agent's memory: short-term items in process, long-term in the project's
        SQLite store (``[memory] path``), shared by every process. See docs/memory.md."""
        if self._memory is None:
            from .memory import Memory

            settings = self.runtime.config.memory
            self._memory = Memory(
                self.runtime.memory_store,
                self.agent_id,
                short_term_size=settings.short_term_size,
                default_ttl=settings.default_ttl_sec,
            )
        return self._memory

    def llm(self, name: str) -> LLMProvider:
        """The model ``[llm.<name>]`` of ``loom.toml`` (or ``"router"`` for ``[router]``).

        Raises:
            LLMError: no such entry; the message shows what to add.
        """
        provider = self._llms.get(name)
        if provider is None:
            from .llm import LLMProvider

            provider = self._llms[name] = LLMProvider.from_name(self, name)
        return provider

    # -- publishing ------------------------------------------------------------------

    def _publish(
        self,
        topic: str,
        data: Any = None,
        *,
        type: str = "event",
        correlation_id: str | None = None,
        reply_to: str | None = None,
        thread_id: str | None = None,
        ttl_ms: int = 0,
        headers: dict[str, str] | None = None,
        event_id: str | None = None,
        count: bool = True,
        span_name: str | None = None,
    ) -> Envelope:
        """Build and send an envelope; ``count=False`` for the runtime's own reports
        (heartbeats, logs, errors), which are not the agent's activity."""
        validate_topic(topic)
        payload, content_type = encode_data(data)
        parent = current_event.get()
        hops = 0
        if parent is not None:
            hops = parent.hops + 1
            thread_id = thread_id or parent.thread_id or parent.id
            if count and hops > self.runtime.config.runtime.max_hops:
                raise LoomError(
                    f"{self.agent_id} emitted {topic!r} at hop {hops}, past [runtime] max_hops = "
                    f"{self.runtime.config.runtime.max_hops}: agents are probably answering "
                    "each other in a loop (raise max_hops if the chain is meant to be that long)"
                )
        event_id = event_id or new_id()
        record = traceparent = None
        tracing = self.runtime.tracing
        if count and tracing.enabled:  # the runtime's own reports are not traced
            traceparent, record = tracing.begin_publish(topic, self.agent_id, event_id, span_name)
        env = Envelope(
            topic=topic,
            data=data,
            payload=payload,
            content_type=content_type,
            id=event_id,
            type=type,
            source=self.agent_id,
            correlation_id=correlation_id,
            reply_to=reply_to,
            thread_id=thread_id,
            ttl_ms=ttl_ms,
            hops=hops,
            traceparent=traceparent,
            headers=headers,
        )
        self.runtime.client.publish(env)
        if record is not None:
            record[6] = time.time_ns()  # the publish span ends once ZeroMQ has the event
        if count:
            self.emitted += 1
            self.last_emit = time.monotonic()
        return env

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
        return self._publish(topic, data, ttl_ms=ttl_ms, thread_id=thread_id, headers=headers)

    # -- request / reply -------------------------------------------------------------

    async def request(self, topic: str, data: Any = None, *, timeout: float = 5.0) -> Envelope:
        """Publish a request and wait for the first reply (any process may answer).

        Raises:
            RequestTimeout: no reply within ``timeout`` seconds.
            RemoteError: the responder's handler raised (its error is in the message).
        """
        with self.runtime.tracing.span(
            f"request {topic}", "client", agent=self.agent_id, attributes={"loom.topic": topic}
        ):
            return await self._request(topic, data, timeout)

    async def _request(self, topic: str, data: Any, timeout: float) -> Envelope:
        correlation = new_id()
        box = self.client.expect_replies(self.inbox, correlation)
        try:
            self._publish(
                topic, data, type="request", correlation_id=correlation, reply_to=self.inbox
            )
            loop = asyncio.get_running_loop()
            if not await box.wait(loop.time() + timeout):
                raise RequestTimeout(topic, timeout)
            reply = box.items.popleft()
        finally:
            self.client.forget(self.inbox, correlation)
        raise_if_error(reply, topic)
        return reply

    async def reply(self, event: Envelope, data: Any = None, *, type: str = "reply") -> Envelope:
        """Answer ``event`` (a request, award or cfp): the reply goes to its ``reply_to``.

        Raises :class:`LoomError` when the event expects no reply.
        """
        if not event.reply_to:
            raise LoomError(
                f"event {event.id} on {event.topic!r} has no reply_to: it was published with "
                "ctx.emit(), not ctx.request(), so nobody is waiting for a reply"
            )
        return self._publish(
            event.reply_to,
            data,
            type=type,
            correlation_id=event.correlation_id or event.id,
            thread_id=event.thread_id or event.id,
            span_name=f"reply {event.topic}",
        )

    # -- tools -----------------------------------------------------------------------

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
        return await self.runtime.actions.call(self, name, args, timeout=timeout)

    # -- subscriptions ---------------------------------------------------------------

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
        :func:`~loom_kernel.agent.on_event`. Returns once the subscription is live.
        """
        sub = await self.client.subscribe(
            pattern,
            qos=qos,
            owner=self.agent_id,
            maxsize=mailbox_size,
            max_size=max_size,
            max_delay=max_delay,
        )
        self._subscriptions = [s for s in self._subscriptions if not s.closed]
        self._subscriptions.append(sub)
        return sub

    async def _close_subscriptions(self) -> None:
        for sub in self._subscriptions:
            await sub.aclose()
        self._subscriptions.clear()

    # -- collaboration patterns (see collaboration.py) ------------------------------

    async def fan_out(self, *args: Any, **kwargs: Any) -> collaboration.FanInResult:
        """See :func:`loom_kernel.collaboration.fan_out`."""
        with self._pattern_span("fan_out") as span:
            result = await collaboration.fan_out(self, *args, **kwargs)
            _describe_gathering(span, result)
            return result

    async def fan_in(self, *args: Any, **kwargs: Any) -> collaboration.FanInResult:
        """See :func:`loom_kernel.collaboration.fan_in`."""
        with self._pattern_span("fan_in") as span:
            result = await collaboration.fan_in(self, *args, **kwargs)
            _describe_gathering(span, result)
            return result

    async def barrier(self, *args: Any, **kwargs: Any) -> list[str]:
        """See :func:`loom_kernel.collaboration.barrier`."""
        with self._pattern_span("barrier"):
            return await collaboration.barrier(self, *args, **kwargs)

    async def contract_net(self, *args: Any, **kwargs: Any) -> collaboration.ContractResult:
        """See :func:`loom_kernel.collaboration.contract_net`."""
        with self._pattern_span("contract_net"):
            return await collaboration.contract_net(self, *args, **kwargs)

    async def bid(self, *args: Any, **kwargs: Any) -> Envelope | None:
        """See :func:`loom_kernel.collaboration.bid`."""
        with self._pattern_span("bid"):
            return await collaboration.bid(self, *args, **kwargs)

    def _pattern_span(self, pattern: str) -> contextlib.AbstractContextManager[Span | None]:
        return self.runtime.tracing.span(
            pattern, agent=self.agent_id, attributes={"loom.pattern": pattern}
        )

    def __repr__(self) -> str:
        return f"<Context {self.agent_id!r}>"


def raise_if_error(reply: Envelope, topic: str) -> None:
    """Turn an ``error`` reply into :class:`RemoteError`."""
    if reply.type == "error":
        info = reply.data if isinstance(reply.data, dict) else {"message": str(reply.data)}
        raise RemoteError(topic, reply.source, info.get("error", "Error"), info.get("message", ""))


def _describe_gathering(span: Span | None, result: collaboration.FanInResult) -> None:
    """A fan-in's span links every event it gathered (each is its own causal chain)."""
    if span is None:
        return
    span.set_attribute("loom.gathered", len(result.events))
    span.set_attribute("loom.complete", result.complete)
    if result.missing:
        span.set_attribute("loom.missing", list(result.missing))
    for event in result.events:
        link = parse_traceparent(event.traceparent)
        if link is not None:
            span.add_link(link[0], link[1])
