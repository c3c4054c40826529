"""The endpoint: one sender's place on the bus.

An :class:`Endpoint` publishes as one ``source`` (an agent id, or a runtime's client id)
over a :class:`~loom_kernel.bus.Transport`: it fills in what an envelope owes to where
it was sent from (the handled event's thread and hop count, the trace context, the
encoded payload), checks for runaway loops (``max_hops``), counts what it emitted, and
owns the subscriptions and the reply inbox of its source. An agent's
:class:`~loom_kernel.agents.Context` is a facade over one.

>>> endpoint = Endpoint(transport, "pricer", tracer=recorder)        # doctest: +SKIP
>>> endpoint.send(Envelope(topic="market.price.BTC", data={"price": 97_000.0}))
>>> reply = await endpoint.request("pricing.quote", {"symbol": "BTC"}, timeout=2)
"""

from __future__ import annotations

import asyncio
import time
from contextvars import ContextVar
from typing import Any

from ..bus.transport import ReplyBox, Subscription, Transport
from ..errors import LoomError, RemoteError, RequestTimeout
from ..protocol.envelope import Envelope, encode_data, new_id
from ..protocol.topics import validate_topic
from ..tracing.tracer import NO_TRACER, Tracer

__all__ = ["Endpoint", "current_event", "raise_if_error"]

#: The event whose handler is running (None outside handlers). What an endpoint sends
#: inherits its thread id and hop count, so causal chains stay linked across agents.
current_event: ContextVar[Envelope | None] = ContextVar("loom_current_event", default=None)


class Endpoint:
    """Publishes, requests, replies and subscribes as one ``source``.

    Args:
        transport: the process's connection to the bus.
        source: the id everything sent from here carries (an agent id).
        tracer: records publish and request spans (default: none).
        max_hops: a causal chain longer than this is refused as a loop.
    """

    def __init__(
        self, transport: Transport, source: str, *, tracer: Tracer = NO_TRACER, max_hops: int = 32
    ):
        self.transport = transport
        self.source = source
        self.tracer = tracer
        self.max_hops = max_hops
        self.inbox = transport.inbox(source)
        # the transport's own ids when it has them (the ZeroMQ client knows its events by
        # them: in-process delivery); any unique id otherwise
        self._new_id = getattr(transport, "new_id", new_id)
        self.emitted = 0
        self.last_emit = 0.0
        self._subscriptions: list[Subscription] = []

    # -- sending ---------------------------------------------------------------------

    def send(self, env: Envelope, *, span_name: str | None = None) -> Envelope:
        """Publish ``env`` (built with its topic, data and kind) from this source.

        Fills ``source``, ``id``, the payload, the thread and hop count inherited from
        the event being handled, and ``traceparent`` (its publish span is named
        ``span_name``, default ``publish <topic>``). Returns ``env``.

        Raises:
            TopicError: the topic is not a valid concrete topic.
            TypeError: the data cannot be encoded.
            LoomError: the causal chain is past ``max_hops`` (agents answering each
                other in a loop).
        """
        self._prepare(env)
        if env.hops > self.max_hops:
            raise LoomError(
                f"{self.source} emitted {env.topic!r} at hop {env.hops}, past [runtime] "
                f"max_hops = {self.max_hops}: agents are probably answering each other in a "
                "loop (raise max_hops if the chain is meant to be that long)"
            )
        tracer = self.tracer
        span = None
        if tracer.enabled:
            env.traceparent, span = tracer.begin_publish(env.topic, self.source, env.id, span_name)
        self.transport.publish(env)
        if span is not None:
            span.end_ns = time.time_ns()  # the publish span ends once the transport has it
        self.emitted += 1
        self.last_emit = time.monotonic()
        return env

    def report(self, topic: str, data: Any = None, *, type: str = "report") -> Envelope:
        """Publish one of Loom's own reports (heartbeat, log line, error, statistics):
        not traced and not counted as the source's activity."""
        env = Envelope(topic=topic, data=data, type=type)
        self._prepare(env)
        self.transport.publish(env)
        return env

    def _prepare(self, env: Envelope) -> None:
        validate_topic(env.topic)
        env.payload, env.content_type = encode_data(env.data)
        env.source = self.source
        if not env.id:
            env.id = self._new_id()
        parent = current_event.get()
        if parent is not None:
            env.hops = parent.hops + 1
            env.thread_id = env.thread_id or parent.thread_id or parent.id

    async def emit(
        self,
        topic: str,
        data: Any = None,
        *,
        ttl_ms: int = 0,
        thread_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Envelope:
        """Publish ``data`` on ``topic``; returns the envelope sent (see :meth:`send`)."""
        return self.send(
            Envelope(topic=topic, data=data, ttl_ms=ttl_ms, thread_id=thread_id, headers=headers)
        )

    # -- request / reply -------------------------------------------------------------

    async def request(self, topic: str, data: Any = None, *, timeout: float = 5.0) -> Envelope:
        """Publish a request and wait for the first reply (any process may answer).

        Raises:
            RequestTimeout: no reply within ``timeout`` seconds.
            RemoteError: the responder's handler raised (its error is in the message).
        """
        with self.tracer.span(
            f"request {topic}", "client", agent=self.source, attributes={"loom.topic": topic}
        ):
            correlation = new_id()
            box = self.expect_replies(correlation)
            try:
                self.send(
                    Envelope(
                        topic=topic,
                        data=data,
                        type="request",
                        correlation_id=correlation,
                        reply_to=self.inbox,
                    )
                )
                if not await box.wait(asyncio.get_running_loop().time() + timeout):
                    raise RequestTimeout(topic, timeout)
                reply = box.items.popleft()
            finally:
                self.forget(correlation)
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
        answer = Envelope(
            topic=event.reply_to,
            data=data,
            type=type,
            correlation_id=event.correlation_id or event.id,
            thread_id=event.thread_id or event.id,
        )
        return self.send(answer, span_name=f"reply {event.topic}")

    def expect_replies(self, correlation_id: str, box: ReplyBox | None = None) -> ReplyBox:
        """Collect replies to this endpoint's inbox carrying ``correlation_id``."""
        return self.transport.expect_replies(self.inbox, correlation_id, box)

    def forget(self, correlation_id: str) -> None:
        """Stop collecting replies to ``correlation_id`` (see :meth:`expect_replies`)."""
        self.transport.forget(self.inbox, correlation_id)

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
        """A subscription owned by this endpoint (closed by :meth:`aclose`); iterate it
        for events. Returns once it is live on the whole bus."""
        sub = await self.transport.subscribe(
            pattern,
            qos=qos,
            owner=self.source,
            maxsize=mailbox_size,
            max_size=max_size,
            max_delay=max_delay,
        )
        self._subscriptions = [s for s in self._subscriptions if not s.closed]
        self._subscriptions.append(sub)
        return sub

    async def aclose(self) -> None:
        """Close the subscriptions made through this endpoint."""
        subs, self._subscriptions = self._subscriptions, []
        for sub in subs:
            await sub.aclose()

    def __repr__(self) -> str:
        return f"<Endpoint {self.source!r}>"


def raise_if_error(reply: Envelope, topic: str) -> None:
    """Turn an ``error`` reply into :class:`RemoteError`."""
    if reply.type == "error":
        info = reply.data if isinstance(reply.data, dict) else {"message": str(reply.data)}
        raise RemoteError(topic, reply.source, info.get("error", "Error"), info.get("message", ""))
