"""An async bus client: one PUB and one SUB socket shared by everything in a process.

Guarantees on top of plain ZeroMQ:

- ``connect()`` returns once this client's own events come back through the
  broker, so nothing published after it is lost to the slow-joiner problem.
- ``subscribe()`` returns once the subscription is live at the broker (a probe on
  a fresh topic, subscribed through the same socket after the real prefix, has
  made the round trip; ZeroMQ keeps one pipe's subscriptions in order).
- Topics are matched exactly as ``topics.py`` says, not by byte prefix.
- Every frame that cannot be decoded is counted and dropped; per-(source, topic)
  sequence gaps are counted as lost; replies are routed to their request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from .bus import BusAddress
from .envelope import Envelope, decode_frames, encode_frames, new_id
from .errors import BusError, ProtocolError
from .qos import Mailbox, MailboxClosed, MailboxStatistics, make_mailbox
from .topics import Pattern, compile_pattern

__all__ = ["BusClient", "ClientStatistics", "Subscription"]

log = logging.getLogger("loom.client")
PROBE_PREFIX = "loom.probe."
REPLY_PREFIX = "loom.reply."
_DRAIN_BATCH = 512
_ROUTE_CACHE_LIMIT = 50_000
_SEQ_TRACK_LIMIT = 200_000  # (source, topic) streams remembered for gap detection


@dataclass(frozen=True)
class ClientStatistics:
    """Counters of one client since it connected."""

    client_id: str
    published: int
    received: int
    delivered: int
    malformed: int
    lost: int
    gaps: int
    expired: int
    late_replies: int
    subscriptions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Subscription:
    """A live subscription: iterate it for events (lists of events for ``batched``).

    >>> async with client.subscribe_ctx("market.price.*") as sub:   # doctest: +SKIP
    ...     async for event in sub: ...
    """

    def __init__(self, client: BusClient, pattern: Pattern, mailbox: Mailbox, owner: str):
        self.client = client
        self.pattern = pattern
        self.mailbox = mailbox
        self.owner = owner
        self.closed = False

    @property
    def qos(self) -> str:
        return self.mailbox.qos

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.mailbox.get()
        except MailboxClosed:
            raise StopAsyncIteration from None

    async def get(self, timeout: float | None = None) -> Any:
        """The next event (or batch); raises ``TimeoutError`` after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self.mailbox.get(), timeout)
        except MailboxClosed:
            raise BusError(f"subscription {self.pattern.text!r} is closed") from None

    def statistics(self) -> MailboxStatistics:
        return self.mailbox.statistics()

    async def aclose(self) -> None:
        await self.client.unsubscribe(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Subscription {self.pattern.text!r} qos={self.qos} owner={self.owner!r}>"


class ReplyBox:
    """Collects the replies that share one correlation id."""

    def __init__(self) -> None:
        self.items: deque[Envelope] = deque()
        self._waiter: asyncio.Future[None] | None = None

    def put(self, env: Envelope) -> None:
        self.items.append(env)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, deadline: float) -> bool:
        """Wait until an item is there or ``deadline`` (loop time) passes; True if one is."""
        loop = asyncio.get_running_loop()
        while not self.items:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._waiter = loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, remaining)
            except TimeoutError:
                return bool(self.items)
            finally:
                self._waiter = None
        return True


class BusClient:
    """Publish and subscribe on a bus.

    Args:
        address: the bus endpoints.
        name: a readable prefix for the client id (``<name>-<random>``).
        context: the ZeroMQ context (must be the broker's for ``inproc://``).
        hwm: high-water mark of both sockets.
    """

    def __init__(
        self,
        address: BusAddress,
        *,
        name: str = "client",
        context: zmq.Context | None = None,
        hwm: int = 100_000,
    ):
        self.address = address
        self.client_id = f"{name}-{os.urandom(5).hex()}"
        # Replies come to per-owner inboxes under one subscribed prefix.
        self._inbox_prefix = f"{REPLY_PREFIX}{self.client_id}."
        sync_ctx = context or zmq.Context.instance()
        self._ctx = zmq.asyncio.Context.shadow(sync_ctx.underlying)
        self._hwm = hwm
        self._pub: zmq.Socket | None = None
        self._asub: zmq.asyncio.Socket | None = None
        self._sub: zmq.Socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._subs: list[Subscription] = []
        self._prefix_refs: dict[str, int] = {}
        self._routes: dict[str, tuple[Subscription, ...]] = {}
        self._replies: dict[tuple[str, str], ReplyBox] = {}
        self._probes: dict[str, asyncio.Future[None]] = {}
        self._probe_counter = 0
        self._seq: dict[tuple[str, str], int] = {}
        self._last_seq: dict[tuple[str, str], int] = {}
        self._published = 0
        self._received = 0
        self._delivered = 0
        self._malformed = 0
        self._lost = 0
        self._gaps = 0
        self._expired = 0
        self._late = 0
        self.connected = False

    # -- lifecycle -------------------------------------------------------------------

    async def connect(self, timeout: float = 5.0) -> None:
        """Connect both sockets and wait until our own events come back through the broker.

        Raises :class:`BusError` when no broker answers within ``timeout`` seconds.
        """
        if self.connected:
            return
        pub = self._ctx.socket(zmq.PUB)
        asub = self._ctx.socket(zmq.SUB)
        for sock in (pub, asub):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, self._hwm)
            sock.setsockopt(zmq.RCVHWM, self._hwm)
        pub.connect(self.address.publish)
        asub.connect(self.address.subscribe)
        self._pub = zmq.Socket.shadow(pub.underlying)
        self._pub_owner = pub
        self._asub = asub
        self._sub = zmq.Socket.shadow(asub.underlying)
        self._task = asyncio.get_running_loop().create_task(
            self._receive_loop(), name=f"loom-receive-{self.client_id}"
        )
        try:
            self._add_prefix(self._inbox_prefix)
            await self._probe(timeout, what="connect")
        except BaseException:
            await self.aclose()
            raise
        self.connected = True

    async def aclose(self) -> None:
        """Stop receiving, close every subscription and both sockets (idempotent)."""
        self.connected = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in list(self._subs):
            sub.closed = True
            sub.mailbox.close()
        self._subs.clear()
        self._routes.clear()
        for sock in (getattr(self, "_pub_owner", None), self._asub):
            if sock is not None and not sock.closed:
                sock.close(0)
        self._pub = self._sub = self._asub = None

    async def __aenter__(self) -> BusClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- publishing ------------------------------------------------------------------

    def publish(self, env: Envelope) -> None:
        """Send an envelope (fills ``id``, ``ts`` and ``seq`` when unset). Never blocks."""
        pub = self._pub
        if pub is None:
            raise BusError("the bus client is closed: open a runtime (or connect) first")
        if not env.id:
            env.id = new_id()
        if not env.ts:
            env.ts = time.time_ns()
        if not env.seq:
            key = (env.source, env.topic)
            env.seq = self._seq.get(key, 0) + 1
            self._seq[key] = env.seq
        topic, header, payload = encode_frames(env)
        pub.send(topic, zmq.SNDMORE)
        pub.send(header, zmq.SNDMORE)
        pub.send(payload)
        self._published += 1

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
        """Subscribe to a pattern; returns once the subscription is live at the broker.

        Raises :class:`TopicError` for a bad pattern, ``ValueError`` for a bad QoS.
        """
        compiled = compile_pattern(pattern)
        mailbox = make_mailbox(qos, **mailbox_options)
        sub = Subscription(self, compiled, mailbox, owner)
        self._subs.append(sub)
        self._routes.clear()
        self._add_prefix(compiled.prefix)
        try:
            await self._probe(timeout, what=f"subscribe {pattern!r}")
        except BaseException:
            await self.unsubscribe(sub)
            raise
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        """Stop a subscription: its iterator ends once its mailbox is drained."""
        if sub.closed:
            return
        sub.closed = True
        sub.mailbox.close()
        if sub in self._subs:
            self._subs.remove(sub)
            self._routes.clear()
            self._remove_prefix(sub.pattern.prefix)
            # Events missed while nobody here listened are not losses: forget where those
            # streams were, so the next event starts them afresh.
            self._last_seq = {
                key: seq
                for key, seq in self._last_seq.items()
                if any(s.pattern.matches(key[1]) for s in self._subs)
            }

    def _add_prefix(self, prefix: str) -> None:
        count = self._prefix_refs.get(prefix, 0)
        if count == 0 and self._sub is not None:
            self._sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        self._prefix_refs[prefix] = count + 1

    def _remove_prefix(self, prefix: str) -> None:
        count = self._prefix_refs.get(prefix, 0) - 1
        if count <= 0:
            self._prefix_refs.pop(prefix, None)
            if self._sub is not None:
                self._sub.setsockopt(zmq.UNSUBSCRIBE, prefix.encode())
        else:
            self._prefix_refs[prefix] = count

    async def _probe(self, timeout: float, what: str) -> None:
        """Round-trip a probe on a fresh topic subscribed after everything before it."""
        self._probe_counter += 1
        topic = f"{PROBE_PREFIX}{self.client_id}.{self._probe_counter}"
        loop = asyncio.get_running_loop()
        arrived: asyncio.Future[None] = loop.create_future()
        self._probes[topic] = arrived
        self._add_prefix(topic)
        deadline = loop.time() + timeout
        interval = 0.001
        try:
            while True:
                self.publish(Envelope(topic=topic, type="probe", source=self.client_id))
                done, _ = await asyncio.wait({arrived}, timeout=interval)
                if done:
                    return
                if loop.time() >= deadline:
                    raise BusError(
                        f"{what}: no bus answered at {self.address.publish} / "
                        f"{self.address.subscribe} within {timeout:g} s. Start one with "
                        '`loom bus`, or let the runtime embed one ([bus] mode = "auto").'
                    )
                interval = min(interval * 2, 0.05)
        finally:
            self._probes.pop(topic, None)
            self._remove_prefix(topic)

    # -- replies ---------------------------------------------------------------------

    def inbox(self, owner: str) -> str:
        """The reply topic of one owner (an agent id) of this client."""
        return f"{self._inbox_prefix}{owner}"

    def expect_replies(
        self, inbox: str, correlation_id: str, box: ReplyBox | None = None
    ) -> ReplyBox:
        """Route replies to ``inbox`` carrying ``correlation_id`` to a box until :meth:`forget`.

        Several correlation ids may share one box (a fan-out gathers into one).
        """
        box = box or ReplyBox()
        self._replies[(inbox, correlation_id)] = box
        return box

    def forget(self, inbox: str, correlation_id: str) -> None:
        self._replies.pop((inbox, correlation_id), None)

    # -- receiving -------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        asub, sub = self._asub, self._sub
        if asub is None or sub is None:
            raise BusError("receive loop started before connect()")
        while True:
            await asub.poll(flags=zmq.POLLIN)
            for _ in range(_DRAIN_BATCH):
                try:
                    frames = self._recv_message(sub)
                except zmq.Again:
                    break
                try:
                    self._dispatch(frames)
                except Exception:  # a bug in dispatch must not stop the bus for everyone
                    log.exception("error dispatching an event; it was dropped")
            else:
                await asyncio.sleep(0)

    @staticmethod
    def _recv_message(sub: zmq.Socket) -> list[bytes]:
        """One whole message, frame by frame.

        ``recv_multipart`` asks the socket for RCVMORE after every frame, which costs
        more than the receive itself; a ``Frame`` carries that flag for free.
        """
        frame = sub.recv(zmq.NOBLOCK, copy=False)
        frames = [frame.bytes]
        while frame.more:
            frame = sub.recv(copy=False)
            frames.append(frame.bytes)
        return frames

    def _dispatch(self, frames: list[bytes]) -> None:
        self._received += 1
        try:
            env = decode_frames(frames)
        except ProtocolError as exc:
            self._malformed += 1
            if self._malformed == 1 or self._malformed % 1000 == 0:
                log.warning("dropped a malformed message (%d so far): %s", self._malformed, exc)
            return
        topic = env.topic
        if topic.startswith(PROBE_PREFIX):
            probe = self._probes.get(topic)
            if probe is not None and not probe.done():
                probe.set_result(None)
            return
        if topic.startswith(self._inbox_prefix):
            box = self._replies.get((topic, env.correlation_id or ""))
            if box is None:
                self._late += 1
            else:
                box.put(env)
            return
        if env.seq:
            key = (env.source, topic)
            last = self._last_seq.get(key)
            if last is None and len(self._last_seq) >= _SEQ_TRACK_LIMIT:
                self._last_seq.clear()  # bounded memory; streams restart their gap check
            self._last_seq[key] = env.seq
            if last is not None and env.seq > last + 1:
                self._note_gap(env, env.seq - last - 1)
        if env.ttl_ms and env.expired:
            self._expired += 1
            return
        subs = self._routes.get(topic)
        if subs is None:
            subs = self._route(topic)
        for sub in subs:
            sub.mailbox.put_nowait(env)
        self._delivered += len(subs)

    def _route(self, topic: str) -> tuple[Subscription, ...]:
        subs = tuple(s for s in self._subs if s.pattern.matches(topic))
        if len(self._routes) >= _ROUTE_CACHE_LIMIT:
            self._routes.clear()
        self._routes[topic] = subs
        return subs

    def _note_gap(self, env: Envelope, missing: int) -> None:
        self._gaps += 1
        self._lost += missing
        subs = self._routes.get(env.topic)
        if subs is None:
            subs = self._route(env.topic)
        for sub in subs:
            sub.mailbox.note_gap(missing)
        log.warning(
            "%d event(s) lost on %r from %r before seq %d", missing, env.topic, env.source, env.seq
        )

    def statistics(self) -> ClientStatistics:
        return ClientStatistics(
            client_id=self.client_id,
            published=self._published,
            received=self._received,
            delivered=self._delivered,
            malformed=self._malformed,
            lost=self._lost,
            gaps=self._gaps,
            expired=self._expired,
            late_replies=self._late,
            subscriptions=[
                {"pattern": s.pattern.text, "owner": s.owner, **s.statistics().to_dict()}
                for s in self._subs
            ],
        )
