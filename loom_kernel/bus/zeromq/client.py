"""The ZeroMQ transport: one PUB and one SUB socket shared by everything in a process.

Guarantees on top of plain ZeroMQ:

- ``connect()`` returns once this client's own events come back through the
  broker, so nothing published after it is lost to the slow-joiner problem.
- ``subscribe()`` returns once the subscription is live at the broker (a probe on
  a fresh topic, subscribed through the same socket after the real prefix, has
  made the round trip; ZeroMQ keeps one pipe's subscriptions in order).
- Topics are matched exactly as ``topics.py`` says, not by byte prefix; frames that
  cannot be decoded are counted and dropped; sequence gaps are counted as lost; replies
  are routed to their request (:mod:`loom_kernel.bus.dispatch`).
- No frame over ``max_message_size`` leaves or enters: ``publish`` refuses it (counted
  as ``oversized``) and ZeroMQ disconnects a peer that sends one.
- **Batches.** The first event published in a turn of the event loop leaves at once;
  the ones that follow in the same turn leave together at its end, as batches
  (:mod:`.outbox`); a batch received is decoded in one call.
- **In-process delivery.** An event this client publishes reaches the subscriptions of
  this client at once, decoded from its payload as a remote subscriber would see it
  (same sequence numbers, QoS, TTL and statistics), and goes to the bus once for
  everyone else; when it comes back from the broker it is dropped unread (its header
  starts with this client's id prefix).
- **Filtering at the source.** A client of the process hosting the bus is given the
  broker's :class:`~.listeners.Listeners`: an event of its own that no other client
  subscribes to is not sent at all (counted as ``unheard``); see :mod:`.listeners` for
  why that loses nothing.
- The bus is watched through the broker's beats (:mod:`.health`): when it is lost, the
  requests waiting for a reply fail at once with :class:`BusError`, and the client
  probes until the bus answers again (the same broker, or one that took its address
  over: ZeroMQ reconnects both sockets and the SUB socket re-sends its subscriptions).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import weakref
from typing import Any

import msgspec
import zmq
import zmq.asyncio

from ...errors import BusError, ProtocolError
from ...protocol import reserved
from ...protocol.batch import BATCH_FRAMES, decode_batch
from ...protocol.envelope import (
    PROTOCOL_VERSION,
    Envelope,
    decode_data,
    decode_frames,
    encode_frames,
)
from ...protocol.topics import compile_pattern
from ...security import ClientCurve
from ..dispatch import Dispatcher
from ..qos import make_mailbox
from ..stamp import Stamp, oversized
from ..transport import ClientStatistics, ReplyBox, Subscription
from .address import BusAddress
from .health import BusHealth
from .listeners import Listeners, SourceFilter
from .outbox import Outbox

__all__ = ["BusClient"]

log = logging.getLogger("loom.client")
_DRAIN_BATCH = 512
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024
_RECONNECT_MS = 100  # ZeroMQ retries a lost connection this often (no backoff)
_PROBE = reserved.PROBE_PREFIX.encode()


# what a refused handshake looks like from here: the same silence as no bus at all
_SECURED_HINT = {
    False: 'If the bus is secured ([bus] security = "curve" there), set it here too, with '
    "an admitted key pair (docs/security.md).",
    True: "If it runs, it refused this process's key pair ([bus] identity): is the key "
    "admitted there ([bus] allow), and is broker.key the bus's own public key?",
}


class BusClient:
    """Publish and subscribe on a ZeroMQ bus (a :class:`~loom_kernel.bus.Transport`).

    Args:
        address: the bus endpoints.
        name: a readable prefix for the client id (``<name>-<random>``).
        context: the ZeroMQ context (must be the broker's for ``inproc://``).
        hwm: high-water mark of both sockets.
        max_message_size: the largest frame sent or accepted, in bytes.
        lost_after: seconds without a beat of the broker before the bus counts as lost
            (None: never; see :mod:`.health`).
        beating: the bus is known to beat: watch it from the start, not from the first
            beat heard.
        batching: send the events published in one turn of the event loop as batches
            (``[bus] batching``).
        local_delivery: deliver this client's events to its own subscriptions in
            process (``[bus] local_delivery``).
        curve: the key pair to prove and the broker's key, on a CURVE bus
            (``[bus] security``); None on a plain one.
        listeners: the subscriptions counted by the broker this process hosts (``[bus]
            filter_at_source``): events of its own no other client subscribes to are not
            sent. None: everything is sent.
    """

    def __init__(
        self,
        address: BusAddress,
        *,
        name: str = "client",
        context: zmq.Context | None = None,
        hwm: int = 100_000,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        lost_after: float | None = 1.0,
        beating: bool = False,
        batching: bool = True,
        local_delivery: bool = True,
        curve: ClientCurve | None = None,
        listeners: Listeners | None = None,
    ):
        self.address = address
        self._curve = curve
        self.stamp = Stamp(name)
        self.client_id = self.stamp.client_id
        self._id_prefix = self.stamp.id_prefix
        self._echo = f'{{"v":{PROTOCOL_VERSION},"id":"{self._id_prefix}'.encode()
        self._echo_batch = b"[" + self._echo
        self._outbox = Outbox(batching)
        self._local = local_delivery
        self._local_count = self._echoes = self._unheard = 0
        self._filter = SourceFilter(listeners if local_delivery else None)
        sync_ctx = context or zmq.Context.instance()
        self._ctx = zmq.asyncio.Context.shadow(sync_ctx.underlying)
        self._hwm = hwm
        self.max_message_size = max_message_size
        # Replies come to per-owner inboxes under one subscribed prefix.
        self._dispatcher = Dispatcher(reserved.inbox(self.client_id, ""))
        self._pub_owner: zmq.asyncio.Socket | None = None
        self._pub: zmq.Socket | None = None
        self._asub: zmq.asyncio.Socket | None = None
        self._sub: zmq.Socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._prefix_refs: dict[str, int] = {}
        self._probes: dict[str, asyncio.Future[None]] = {}
        self._probe_counter = 0
        self._published = 0
        self._oversized = 0
        self._health = BusHealth(lost_after or 0.0)
        self._lost_after = lost_after
        self._beating = beating
        self._watch_task: asyncio.Task[None] | None = None
        self._rejoin_task: asyncio.Task[None] | None = None
        self._waiting: weakref.WeakSet[ReplyBox] = weakref.WeakSet()
        self._bus_up = asyncio.Event()
        self._bus_lost = asyncio.Event()
        self._bus_up.set()
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
            sock.setsockopt(zmq.RECONNECT_IVL, _RECONNECT_MS)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, 0)
        asub.setsockopt(zmq.MAXMSGSIZE, self.max_message_size)
        self._connect(pub, self.address.publish)
        self._connect(asub, self.address.subscribe)
        self._pub_owner, self._pub = pub, zmq.Socket.shadow(pub.underlying)
        self._outbox.attach(self._pub, asyncio.get_running_loop())
        self._asub, self._sub = asub, zmq.Socket.shadow(asub.underlying)
        self._task = asyncio.get_running_loop().create_task(
            self._receive_loop(), name=f"loom-receive-{self.client_id}"
        )
        try:
            self._add_prefix(self._dispatcher.inbox_prefix)
            self._add_prefix(reserved.BUS_BEAT)
            await self._probe(timeout, what="connect")
        except BaseException:
            await self.aclose()
            raise
        self.connected = True
        if self._beating:
            self._health.expect(time.monotonic())
        if self._lost_after is not None:
            self._watch_task = asyncio.get_running_loop().create_task(
                self._watch_bus(), name=f"loom-watch-{self.client_id}"
            )

    async def aclose(self) -> None:
        """Stop receiving, close every subscription and both sockets (idempotent)."""
        self.connected = False
        self._outbox.detach()
        tasks = (self._watch_task, self._rejoin_task, self._task)
        self._watch_task = self._rejoin_task = self._task = None
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._dispatcher.close_all()
        for sock in (self._pub_owner, self._asub):
            if sock is not None and not sock.closed:
                sock.close(0)
        self._pub = self._sub = self._asub = self._pub_owner = None

    def side_publisher(self) -> zmq.Socket:
        """A plain PUB socket on this bus for another thread of the process (pyzmq sockets
        are not thread-safe: each thread needs its own). Create, use and close it in that
        thread; what it sends carries no sequence number."""
        sock = zmq.Context.shadow(self._ctx.underlying).socket(zmq.PUB)
        sock.setsockopt(zmq.LINGER, 0)
        self._connect(sock, self.address.publish)
        return sock

    def _connect(self, sock: zmq.Socket, endpoint: str) -> None:
        if self._curve is not None:
            self._curve.secure(sock, endpoint)
        sock.connect(endpoint)

    def repoint(self, address: BusAddress) -> None:
        """Move both sockets to another address of the bus (it moved: its old port was
        taken). The SUB socket re-sends its subscriptions there; what waited in the old
        connections is lost (counted through sequence gaps)."""
        pub, sub = self._pub, self._sub
        if address == self.address or pub is None or sub is None:
            return
        old, self.address = self.address, address
        self._filter.listeners = None  # that broker's count is not this bus's: send all
        for sock, before, after in (
            (pub, old.publish, address.publish),
            (sub, old.subscribe, address.subscribe),
        ):
            with contextlib.suppress(zmq.ZMQError):
                sock.disconnect(before)
            self._connect(sock, after)

    async def __aenter__(self) -> BusClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- publishing ------------------------------------------------------------------

    def new_id(self) -> str:
        """A new event id, unique across processes, that this client knows as its own."""
        return self.stamp.new_id()

    def publish(self, env: Envelope) -> None:
        """Send an envelope (fills ``id``, ``ts`` and ``seq`` when unset). Never blocks.

        Its own subscriptions get it at once (when its id is one of this client's); the
        bus gets it now, or at the end of the loop's turn with the events that follow.

        Raises:
            BusError: the client is closed, or the event is over ``max_message_size``.
        """
        pub = self._pub
        if pub is None:
            raise BusError("the bus client is closed: open a runtime (or connect) first")
        if len(env.payload) > self.max_message_size:
            self._oversized += 1
            raise oversized(env, self.max_message_size)
        self.stamp.stamp(env)
        self._published += 1
        if self._local and env.id.startswith(self._id_prefix):
            self._deliver_here(env)
            if not _is_probe(env.topic) and not self._filter.heard_elsewhere(env.topic):
                self._unheard += 1  # no other client subscribes to it: not sent
                return
        self._outbox.send(encode_frames(env))

    def _deliver_here(self, env: Envelope) -> None:
        """To this client's own subscriptions (or reply boxes), decoded from its payload
        as a subscriber elsewhere decodes it: handlers never share the publisher's data."""
        topic = env.topic
        if topic.startswith(reserved.PROBE_PREFIX) or not self._dispatcher.wants(topic):
            return  # a probe must go round the broker: that is what it is for
        here = msgspec.structs.replace(
            env, v=PROTOCOL_VERSION, data=decode_data(env.payload, env.content_type)
        )
        self._local_count += 1
        self._dispatcher.deliver(here)

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
        sub = Subscription(self, compiled, make_mailbox(qos, **mailbox_options), owner)
        self._dispatcher.add(sub)
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
        if self._dispatcher.remove(sub):
            self._remove_prefix(sub.pattern.prefix)

    def _add_prefix(self, prefix: str) -> None:
        count = self._prefix_refs.get(prefix, 0)
        if count == 0 and self._sub is not None:
            self._sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
            self._filter.subscribed(prefix)
        self._prefix_refs[prefix] = count + 1

    def _remove_prefix(self, prefix: str) -> None:
        count = self._prefix_refs.get(prefix, 0) - 1
        if count <= 0:
            self._prefix_refs.pop(prefix, None)
            self._filter.unsubscribed(prefix)
            if self._sub is not None:
                self._sub.setsockopt(zmq.UNSUBSCRIBE, prefix.encode())
        else:
            self._prefix_refs[prefix] = count

    async def _probe(self, timeout: float, what: str) -> None:
        """Round-trip a probe on a fresh topic subscribed after everything before it."""
        self._probe_counter += 1
        topic = reserved.probe(self.client_id, self._probe_counter)
        loop = asyncio.get_running_loop()
        arrived: asyncio.Future[None] = loop.create_future()
        self._probes[topic] = arrived
        self._add_prefix(topic)
        mark = self._filter.mark(topic)
        deadline = loop.time() + timeout
        interval = 0.001
        try:
            while True:
                self.publish(Envelope(topic=topic, type="probe", source=self.client_id))
                done, _ = await asyncio.wait({arrived}, timeout=interval)
                if done:
                    self._filter.confirm(mark)
                    return
                if loop.time() >= deadline:
                    raise BusError(
                        f"{what}: no bus answered at {self.address.publish} / "
                        f"{self.address.subscribe} within {timeout:g} s. Start one with "
                        '`loom bus`, or let the runtime embed one ([bus] mode = "auto"). '
                        + _SECURED_HINT[self._curve is not None]
                    )
                interval = min(interval * 2, 0.05)
        finally:
            self._probes.pop(topic, None)
            self._remove_prefix(topic)

    # -- replies ---------------------------------------------------------------------

    def inbox(self, owner: str) -> str:
        """The reply topic of one owner (an agent id) of this client."""
        return reserved.inbox(self.client_id, owner)

    def expect_replies(
        self, inbox: str, correlation_id: str, box: ReplyBox | None = None
    ) -> ReplyBox:
        """Route replies to ``inbox`` carrying ``correlation_id`` to a box until :meth:`forget`.

        Several correlation ids may share one box (a fan-out gathers into one). While the
        bus is lost, the box fails at once (its ``wait`` raises :class:`BusError`).
        """
        box = self._dispatcher.expect_replies(inbox, correlation_id, box)
        self._waiting.add(box)
        if self._health.state == "lost":
            box.fail(self._lost_error())
        return box

    def forget(self, inbox: str, correlation_id: str) -> None:
        self._dispatcher.forget(inbox, correlation_id)

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
                except Exception as exc:  # a bug in dispatch must not stop the bus for everyone
                    self._dispatcher.warn(
                        "dispatch", "error dispatching an event; it was dropped: %r", exc
                    )
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
        count = len(frames)
        if self._local and count >= 3 and self._echoed(frames):
            self._echoes += 1  # this client's own event back from the broker: here already
            return
        try:
            if count == BATCH_FRAMES:
                self._route_batch(decode_batch(frames))
                return
            env = decode_frames(frames)
        except ProtocolError as exc:
            self._dispatcher.reject(exc)
            return
        self._route(env)

    def _echoed(self, frames: list[bytes]) -> bool:
        if frames[0].startswith(_PROBE):
            return False  # probes go round the broker to come back
        if len(frames) == BATCH_FRAMES:
            return frames[2].startswith(self._echo_batch)
        return frames[1].startswith(self._echo)

    def _route_batch(self, envs: list[Envelope]) -> None:
        topic = envs[0].topic if envs else ""
        if topic.startswith(reserved.PROBE_PREFIX) or topic == reserved.BUS_BEAT:
            for env in envs:
                self._route(env)
            return
        self._dispatcher.deliver_many(envs)

    def _route(self, env: Envelope) -> None:
        topic = env.topic
        if topic.startswith(reserved.PROBE_PREFIX):
            probe = self._probes.get(topic)
            if probe is not None and not probe.done():
                probe.set_result(None)
            return
        if topic == reserved.BUS_BEAT:
            self._on_beat(env)
            return
        self._dispatcher.deliver(env)

    def statistics(self) -> ClientStatistics:
        stats = self._dispatcher.statistics(self.client_id, self._published, self._oversized)
        return dataclasses.replace(
            stats,
            bus=self._health.to_dict(),
            local=self._local_count,
            echoes=self._echoes,
            batches=self._outbox.batches,
            unheard=self._unheard,
        )

    # -- the bus's health (failover) -------------------------------------------------

    @property
    def bus_lost(self) -> bool:
        """True from the moment the bus is found lost until it answers again."""
        return self._health.state == "lost"

    async def wait_bus(self, timeout: float | None = None) -> None:
        """Return once the bus answers (at once when it is up).

        Raises:
            BusError: it did not come back within ``timeout`` seconds.
        """
        if self._health.state == "up":
            return
        try:
            await asyncio.wait_for(self._bus_up.wait(), timeout)
        except TimeoutError:
            raise BusError(
                f"the bus at {self.address.publish} has not answered for "
                f"{time.monotonic() - self._health.lost_at:.1f} s: is a process of the project "
                "still running it? Start `loom bus`, or open a runtime to embed one."
            ) from None

    async def wait_bus_lost(self) -> None:
        """Return once the bus is lost (at once while it is)."""
        await self._bus_lost.wait()

    def _on_beat(self, env: Envelope) -> None:
        data = env.data if isinstance(env.data, dict) else {}
        interval = data.get("interval")
        seconds = float(interval) if isinstance(interval, int | float) else 0.0
        epoch = str(data.get("epoch") or env.source)
        if self._health.beat(epoch, seconds, time.monotonic()):
            self._lose("a new broker took the bus's address over")

    async def _watch_bus(self) -> None:
        """Declare the bus lost when its beats stop (see :mod:`.health`)."""
        health = self._health
        tick = health.lost_after / 4
        last = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if now - last > 2 * tick:  # this loop was blocked: unread beats may be waiting
                health.last_beat = max(health.last_beat, now)
            last = now
            if health.silent(now) and not self._input_waiting():
                self._lose(f"no beat from its broker for {health.lost_after:g} s")
            tick = health.lost_after / 4

    def _input_waiting(self) -> bool:
        sub = self._sub
        return sub is not None and bool(sub.getsockopt(zmq.EVENTS) & zmq.POLLIN)

    def _lose(self, reason: str) -> None:
        """The bus is lost: fail the requests waiting for replies, then probe until it
        answers again (ZeroMQ reconnects the sockets by itself)."""
        if self._health.state == "lost" or not self.connected:
            return
        self._health.mark_lost(time.monotonic(), reason)
        boxes = list(self._waiting)
        log.warning(
            "the bus at %s is lost (%s): %d waiting request(s) failed; rejoining",
            self.address.publish, reason, len(boxes),
        )  # fmt: skip
        for box in boxes:
            box.fail(self._lost_error())
        self._bus_up.clear()
        self._bus_lost.set()
        if self._rejoin_task is None or self._rejoin_task.done():
            self._rejoin_task = asyncio.get_running_loop().create_task(
                self._rejoin(), name=f"loom-rejoin-{self.client_id}"
            )

    async def _rejoin(self) -> None:
        """Probe until the bus answers: our subscriptions are live there again."""
        while True:
            try:
                await self._probe(self._health.lost_after, what="rejoin")
            except BusError as exc:
                self._dispatcher.warn("rejoin", "still no bus: %s", exc)
                continue
            break
        outage = self._health.mark_up(time.monotonic())
        log.warning("the bus at %s answers again after %.2f s", self.address.publish, outage)
        self._bus_lost.clear()
        self._bus_up.set()

    def _lost_error(self) -> BusError:
        health = self._health
        return BusError(
            f"the bus at {self.address.publish} was lost {time.monotonic() - health.lost_at:.1f}"
            f" s ago ({health.reason}) and is failing over: this request or its reply may not "
            "have been delivered. Retry once the bus is back (`await rt.wait_bus()`) if it is "
            "safe to repeat."
        )


def _is_probe(topic: str) -> bool:
    return topic.startswith(reserved.PROBE_PREFIX)  # a probe must go round the broker
