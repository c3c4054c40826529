"""The NATS client: a :class:`~loom_kernel.bus.Transport` over a NATS server or cluster.

Agents, tools, requests and the studio use it as they use the ZeroMQ client:

- ``publish`` never blocks: it stamps the envelope (:mod:`..stamp`), delivers it to this
  process's own subscriptions at once (``[bus] local_delivery``; the connection asks NATS
  not to echo it back), and queues it for a writer task, which hands each to nats-py in
  order. A request carries its inbox as the NATS reply subject, so a plain NATS program
  can answer it, and a plain ``nats req`` reaches a Loom handler whose reply goes back;
- each Loom pattern becomes one NATS subscription (:mod:`.subjects`: a trailing ``*`` is
  ``>``), made live at the server (a PING round trip) before ``subscribe`` returns; the
  subscriptions of one subject share a :class:`~loom_kernel.bus.Dispatcher`, so an event
  two overlapping subjects both match reaches each Loom subscription once;
- replies come to ``loom.reply.<client>.>``, one NATS subscription;
- while NATS is unreachable the bus counts as lost: waiting requests fail, events queue in
  nats-py's buffer (64 MiB at most) until it reconnects.

Reliable delivery through JetStream is :mod:`.jetstream`, on top of this.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import weakref
from collections import deque
from typing import Any

import msgspec

from ...errors import BusError, ProtocolError, TopicError
from ...extras import require
from ...protocol import reserved
from ...protocol.envelope import PROTOCOL_VERSION, Envelope, decode_data
from ...protocol.topics import compile_pattern
from ..dispatch import Dispatcher
from ..qos import make_mailbox
from ..stamp import Stamp, oversized
from ..transport import ClientStatistics, ReplyBox, Subscription
from .codec import ENVELOPE_HEADER, answered, decode_message, encode_message, reply_subject
from .options import NatsOptions
from .subjects import pattern_subject

__all__ = ["NatsClient", "NatsOptions"]

log = logging.getLogger("loom.client")
_PENDING_LIMIT = 64 * 1024 * 1024  # bytes nats-py keeps while disconnected
_SUB_PENDING = 500_000  # messages a subscription may hold before NATS counts a slow consumer


class _Group:
    """The Loom subscriptions sharing one NATS subject, and that NATS subscription."""

    def __init__(self, subject: str, inbox_prefix: str):
        self.subject = subject
        self.dispatcher = Dispatcher(inbox_prefix)
        self.nats_sub: Any = None


class NatsClient:
    """Publish and subscribe on NATS (see the module docstring).

    Args:
        options: the servers and credentials.
        name: a readable prefix for the client id (``<name>-<random>``).
        max_message_size: the largest payload sent, in bytes (the server's
            ``max_payload``, 1 MiB by default, applies too).
        local_delivery: deliver this client's events to its own subscriptions in process.
    """

    def __init__(
        self,
        options: NatsOptions,
        *,
        name: str = "client",
        max_message_size: int = 16 * 1024 * 1024,
        local_delivery: bool = True,
    ):
        self.options = options
        self.stamp = Stamp(name)
        self.client_id = self.stamp.client_id
        self.max_message_size = max_message_size
        self._local = local_delivery
        self._nc: Any = None
        self._inbox_prefix = reserved.inbox(self.client_id, "")
        self._replies = _Group(self._inbox_prefix + ">", self._inbox_prefix)
        self._groups: dict[str, _Group] = {}
        self._outbox: deque[tuple[str, bytes, dict[str, str], str]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()  # the outbox is empty
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None
        self._waiting: weakref.WeakSet[ReplyBox] = weakref.WeakSet()
        self._published = self._oversized = self._local_count = self._dropped = 0
        self._reconnects = 0
        self._last_error: Exception | None = None
        self._refused = asyncio.Event()
        self._lost_at = 0.0
        self._bus_up = asyncio.Event()
        self._bus_lost = asyncio.Event()
        self._bus_up.set()
        self.connected = False

    # -- lifecycle -------------------------------------------------------------------

    @property
    def connection(self) -> Any:
        """The nats-py connection (for JetStream, :mod:`.jetstream`)."""
        if self._nc is None:
            raise BusError("the NATS client is closed: open a runtime (or connect) first")
        return self._nc

    @property
    def server(self) -> str:
        """The URL of the server this client is connected to now (or the first one)."""
        url = getattr(self._nc, "connected_url", None) if self._nc is not None else None
        return url.geturl() if url is not None else self.options.servers[0]

    async def connect(self, timeout: float = 5.0) -> None:
        """Connect and subscribe to this client's inbox.

        Raises:
            BusError: no server answered within ``timeout`` seconds, or it refused us.
        """
        if self.connected:
            return
        nats = require("nats", 'a NATS bus ([bus] backend = "nats")')

        settings = {
            "name": self.client_id, "connect_timeout": min(timeout, 2.0),
            "allow_reconnect": True, "max_reconnect_attempts": -1, "reconnect_time_wait": 0.25,
            "no_echo": self._local, "pending_size": _PENDING_LIMIT,
            "error_cb": self._on_error, "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
        }  # fmt: skip
        self._refused.clear()
        self._last_error = None
        attempt = asyncio.ensure_future(nats.connect(**settings, **self.options.connect_options()))
        refused = asyncio.ensure_future(self._refused.wait())
        await asyncio.wait({attempt, refused}, timeout=timeout, return_when="FIRST_COMPLETED")
        refused.cancel()
        if not attempt.done() or attempt.exception() is not None:
            attempt.cancel()
            with contextlib.suppress(BaseException):
                await attempt
            raise BusError(self._no_server(timeout, attempt)) from None
        self._nc = attempt.result()
        self.connected = True
        self._writer = asyncio.get_running_loop().create_task(
            self._write(), name=f"loom-nats-writer-{self.client_id}"
        )
        await self._listen(self._replies, timeout)

    def _no_server(self, timeout: float, attempt: asyncio.Future[Any]) -> str:
        where = ", ".join(self.options.servers)
        error = self._last_error
        if error is not None and self._refused.is_set() and isinstance(error, ssl.SSLError):
            return (
                f"TLS with NATS at {where} failed: {error}. Check [bus] tls_ca (the CA that "
                "signed the server's certificate), tls_cert and tls_key in loom.toml"
            )
        if error is not None and self._refused.is_set():
            return (
                f"NATS at {where} refused this client: {error}. Check [bus] user, "
                "credentials or nkey in loom.toml, and $LOOM_NATS_PASSWORD / $LOOM_NATS_TOKEN"
            )
        cause = attempt.exception() if attempt.done() and not attempt.cancelled() else None
        why = f" ({type(cause).__name__}: {cause})" if cause else ""
        return (
            f"no NATS server answered at {where} within {timeout:g} s{why}: start one "
            "(`nats-server -js`), or check [bus] servers in loom.toml"
        )

    async def aclose(self) -> None:
        """Send what is queued, close every subscription and the connection (idempotent)."""
        if self._nc is None:
            return
        nc, self.connected = self._nc, False
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._drain_outbox(), 2.0)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        for group in [*self._groups.values(), self._replies]:
            group.dispatcher.close_all()
        self._groups.clear()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), 2.0)
        self._nc = None

    async def __aenter__(self) -> NatsClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def side_publisher(self) -> Any:
        """A blocking publisher for another thread (:mod:`.side`), or None when the
        server's security is out of its reach."""
        from .side import side_publisher

        return side_publisher(self.server, self.options, self.client_id)

    # -- publishing ------------------------------------------------------------------

    def new_id(self) -> str:
        return self.stamp.new_id()

    def publish(self, env: Envelope) -> None:
        """Send an envelope (fills ``id``, ``ts`` and ``seq`` when unset). Never blocks.

        Raises:
            BusError: the client is closed, or the event is over ``max_message_size``.
        """
        self.prepare(env)
        subject, data, headers = encode_message(env)
        self._outbox.append((subject, data, headers, reply_subject(env)))
        self._idle.clear()
        self._wake.set()

    def prepare(self, env: Envelope) -> None:
        """What publishing does before the event leaves: check its size, stamp it, hand it
        to this process's own subscriptions (JetStream's publisher sends it itself).

        Raises:
            BusError: the client is closed, or the event is over ``max_message_size``.
        """
        if self._nc is None:
            raise BusError("the NATS client is closed: open a runtime (or connect) first")
        if len(env.payload) > self.max_message_size:
            self._oversized += 1
            raise oversized(env, self.max_message_size)
        self.stamp.stamp(env)
        self._published += 1
        if self._local:  # NATS echoes nothing back to this connection (no_echo): all here
            self._deliver_here(env)

    async def _write(self) -> None:
        """Hand the queued events to nats-py, in order (its own buffer batches them)."""
        nc, outbox = self._nc, self._outbox
        while True:
            await self._wake.wait()
            self._wake.clear()
            while outbox:
                subject, data, headers, reply = outbox.popleft()
                try:
                    await nc.publish(subject, data, reply=reply, headers=headers)
                except Exception as exc:  # its buffer is full while NATS is away
                    self._dropped += 1
                    self._replies.dispatcher.warn(
                        "publish", "an event on %r was not sent (%s); %d so far",
                        subject, exc, self._dropped,
                    )  # fmt: skip
            self._idle.set()

    async def flush(self, timeout: float = 5.0) -> None:
        """Return once every event published so far has reached the server.

        Raises:
            BusError: the server did not confirm it within ``timeout`` seconds.
        """
        try:
            await asyncio.wait_for(self._drain_outbox(), timeout)
        except (TimeoutError, Exception) as exc:
            raise BusError(
                f"NATS at {self.server} did not take the events in time: {exc}"
            ) from None

    async def _drain_outbox(self) -> None:
        await self._idle.wait()
        await self.connection.flush(timeout=2)

    def _deliver_here(self, env: Envelope) -> None:
        """To this client's own subscriptions, decoded from its payload as elsewhere."""
        topic = env.topic
        groups = [self._replies] if topic.startswith(self._inbox_prefix) else self._groups.values()
        wanting = [g for g in groups if g.dispatcher.wants(topic)]
        if not wanting:
            return
        here = msgspec.structs.replace(
            env, v=PROTOCOL_VERSION, data=decode_data(env.payload, env.content_type)
        )
        self._local_count += 1
        for group in wanting:
            group.dispatcher.deliver(here)

    def _all_groups(self) -> list[_Group]:
        return [self._replies, *self._groups.values()]

    # -- subscribing -----------------------------------------------------------------

    async def subscribe(
        self,
        pattern: str,
        *,
        qos: str = "reliable",
        owner: str = "",
        timeout: float = 5.0,
        **mailbox_options: Any,
    ) -> Subscription:
        """Subscribe to a pattern; returns once the server has the subscription.

        Raises :class:`TopicError` for a bad pattern, ``ValueError`` for a bad QoS.
        """
        subject = pattern_subject(pattern)
        mailbox = make_mailbox(qos, **mailbox_options)
        sub = Subscription(self, compile_pattern(pattern), mailbox, owner)
        group = self._groups.get(subject)
        if group is None:
            group = self._groups[subject] = _Group(subject, self._inbox_prefix)
            try:
                await self._listen(group, timeout)
            except BaseException:
                self._groups.pop(subject, None)
                raise
        group.dispatcher.add(sub)
        return sub

    async def _listen(self, group: _Group, timeout: float) -> None:
        async def on_message(msg: Any) -> None:
            self._receive(group, msg)

        nc = self.connection
        group.nats_sub = await nc.subscribe(
            group.subject, cb=on_message,
            pending_msgs_limit=_SUB_PENDING, pending_bytes_limit=-1,
        )  # fmt: skip
        try:
            # nats-py queues SUB for its flusher task but writes PING straight to the socket,
            # so one flush's PONG can come back before the server has the SUB. The first
            # flush lets the flusher write it; the second PING follows it on the wire.
            await nc.flush(timeout=timeout)
            await nc.flush(timeout=timeout)
        except Exception as exc:
            raise BusError(
                f"subscribe {group.subject!r}: NATS at {self.server} did not confirm it within "
                f"{timeout:g} s ({type(exc).__name__})"
            ) from None

    async def unsubscribe(self, sub: Subscription) -> None:
        """Stop a subscription: its iterator ends once its mailbox is drained."""
        if sub.closed:
            return
        sub.closed = True
        sub.mailbox.close()
        for subject, group in list(self._groups.items()):
            if group.dispatcher.remove(sub):
                if not group.dispatcher.subscriptions:
                    del self._groups[subject]
                    with contextlib.suppress(Exception):
                        await group.nats_sub.unsubscribe()
                return

    def _receive(self, group: _Group, msg: Any) -> None:
        if group is not self._replies and msg.subject.startswith(self._inbox_prefix):
            return  # a reply to this client, which its inbox's subscription takes
        if msg.headers and "Status" in msg.headers and ENVELOPE_HEADER not in msg.headers:
            return  # the server's own word (503: no responders yet): a request waits, as on ZeroMQ
        try:
            env = decode_message(msg.subject, msg.data, msg.headers, msg.reply)
        except (ProtocolError, TopicError, RecursionError) as exc:
            group.dispatcher.reject(ProtocolError(str(exc)))
            return
        if group is self._replies:
            answered(env)  # a plain NATS program's msg.respond: to its request's reply box
        try:
            group.dispatcher.deliver(env)
        except Exception as exc:  # a bug in dispatch must not stop the bus for everyone
            group.dispatcher.warn("dispatch", "error dispatching an event; dropped: %r", exc)

    # -- replies ---------------------------------------------------------------------

    def inbox(self, owner: str) -> str:
        return reserved.inbox(self.client_id, owner)

    def expect_replies(
        self, inbox: str, correlation_id: str, box: ReplyBox | None = None
    ) -> ReplyBox:
        """Route replies to ``inbox`` carrying ``correlation_id`` to a box until :meth:`forget`;
        while NATS is unreachable, the box fails at once."""
        box = self._replies.dispatcher.expect_replies(inbox, correlation_id, box)
        self._waiting.add(box)
        if self.bus_lost:
            box.fail(self._lost_error())
        return box

    def forget(self, inbox: str, correlation_id: str) -> None:
        self._replies.dispatcher.forget(inbox, correlation_id)

    # -- statistics and the server's health ------------------------------------------

    def statistics(self) -> ClientStatistics:
        groups = self._all_groups()
        parts = [g.dispatcher.statistics(self.client_id, 0) for g in groups]
        total = {
            name: sum(getattr(p, name) for p in parts)
            for name in ("received", "delivered", "malformed", "lost", "gaps", "expired",
                         "late_replies")
        }  # fmt: skip
        return ClientStatistics(
            client_id=self.client_id,
            published=self._published,
            oversized=self._oversized,
            subscriptions=[s for p in parts for s in p.subscriptions],
            bus={
                "state": "lost" if self.bus_lost else "up",
                "server": self.server,
                "reconnects": self._reconnects,
                "unsent": self._dropped,
            },
            local=self._local_count,
            **total,
        )

    @property
    def bus_lost(self) -> bool:
        """True while the connection to NATS is down (nats-py is reconnecting)."""
        return not self._bus_up.is_set()

    async def wait_bus(self, timeout: float | None = None) -> None:
        """Return once NATS answers (at once when connected).

        Raises:
            BusError: it did not come back within ``timeout`` seconds.
        """
        if not self.bus_lost:
            return
        try:
            await asyncio.wait_for(self._bus_up.wait(), timeout)
        except TimeoutError:
            raise BusError(
                f"NATS ({', '.join(self.options.servers)}) has not answered for "
                f"{time.monotonic() - self._lost_at:.1f} s: is the server (or a node of the "
                "cluster) running?"
            ) from None

    async def wait_bus_lost(self) -> None:
        await self._bus_lost.wait()

    async def _on_disconnected(self) -> None:
        if not self.connected:
            return
        self._lost_at = time.monotonic()
        self._bus_up.clear()
        self._bus_lost.set()
        boxes = list(self._waiting)
        log.warning(
            "lost NATS at %s: %d waiting request(s) failed; reconnecting", self.server, len(boxes)
        )
        for box in boxes:
            box.fail(self._lost_error())

    async def _on_reconnected(self) -> None:
        self._reconnects += 1
        log.warning(
            "NATS answers again at %s after %.2f s",
            self.server, time.monotonic() - self._lost_at,
        )  # fmt: skip
        self._bus_lost.clear()
        self._bus_up.set()

    async def _on_error(self, exc: Exception) -> None:
        if self._refused.is_set() and not self.connected:
            return  # keep the refusal: a retry's reset connection would hide why
        self._last_error = exc
        text = str(exc).lower()
        refused = "authoriz" in text or "authentic" in text or isinstance(exc, ssl.SSLError)
        if not self.connected and refused:
            self._refused.set()  # connecting again would be refused again: give up now
            return
        self._replies.dispatcher.warn("nats", "NATS: %s: %s", type(exc).__name__, exc)

    def _lost_error(self) -> BusError:
        return BusError(
            f"NATS at {self.server} was lost {time.monotonic() - self._lost_at:.1f} s ago: "
            "this request or its reply may not have been delivered. Retry once it is back "
            "(`await rt.wait_bus()`) if it is safe to repeat."
        )
