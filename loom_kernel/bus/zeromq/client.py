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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

import zmq
import zmq.asyncio

from ...errors import BusError, ProtocolError
from ...protocol import reserved
from ...protocol.envelope import Envelope, decode_frames, encode_frames, new_id
from ...protocol.topics import compile_pattern
from ..dispatch import Dispatcher
from ..qos import make_mailbox
from ..transport import ClientStatistics, ReplyBox, Subscription
from .address import BusAddress

__all__ = ["BusClient"]

log = logging.getLogger("loom.client")
_DRAIN_BATCH = 512
DEFAULT_MAX_MESSAGE_SIZE = 16 * 1024 * 1024


class BusClient:
    """Publish and subscribe on a ZeroMQ bus (a :class:`~loom_kernel.bus.Transport`).

    Args:
        address: the bus endpoints.
        name: a readable prefix for the client id (``<name>-<random>``).
        context: the ZeroMQ context (must be the broker's for ``inproc://``).
        hwm: high-water mark of both sockets.
        max_message_size: the largest frame sent or accepted, in bytes.
    """

    def __init__(
        self,
        address: BusAddress,
        *,
        name: str = "client",
        context: zmq.Context | None = None,
        hwm: int = 100_000,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ):
        self.address = address
        self.client_id = f"{name}-{os.urandom(5).hex()}"
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
        self._seq: dict[tuple[str, str], int] = {}
        self._published = 0
        self._oversized = 0
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
        asub.setsockopt(zmq.MAXMSGSIZE, self.max_message_size)
        pub.connect(self.address.publish)
        asub.connect(self.address.subscribe)
        self._pub_owner, self._pub = pub, zmq.Socket.shadow(pub.underlying)
        self._asub, self._sub = asub, zmq.Socket.shadow(asub.underlying)
        self._task = asyncio.get_running_loop().create_task(
            self._receive_loop(), name=f"loom-receive-{self.client_id}"
        )
        try:
            self._add_prefix(self._dispatcher.inbox_prefix)
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
        self._dispatcher.close_all()
        for sock in (self._pub_owner, self._asub):
            if sock is not None and not sock.closed:
                sock.close(0)
        self._pub = self._sub = self._asub = self._pub_owner = None

    async def __aenter__(self) -> BusClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- publishing ------------------------------------------------------------------

    def publish(self, env: Envelope) -> None:
        """Send an envelope (fills ``id``, ``ts`` and ``seq`` when unset). Never blocks.

        Raises:
            BusError: the client is closed, or the event is over ``max_message_size``.
        """
        pub = self._pub
        if pub is None:
            raise BusError("the bus client is closed: open a runtime (or connect) first")
        if len(env.payload) > self.max_message_size:
            self._oversized += 1
            raise BusError(
                f"event on {env.topic!r} has a {len(env.payload):,}-byte payload, over the bus's "
                f"[bus] max_message_size of {self.max_message_size:,} bytes: send a reference "
                "(a file path, a URL, a key in memory) instead, or raise max_message_size"
            )
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
        topic = reserved.probe(self.client_id, self._probe_counter)
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
        return reserved.inbox(self.client_id, owner)

    def expect_replies(
        self, inbox: str, correlation_id: str, box: ReplyBox | None = None
    ) -> ReplyBox:
        """Route replies to ``inbox`` carrying ``correlation_id`` to a box until :meth:`forget`.

        Several correlation ids may share one box (a fan-out gathers into one).
        """
        return self._dispatcher.expect_replies(inbox, correlation_id, box)

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
        try:
            env = decode_frames(frames)
        except ProtocolError as exc:
            self._dispatcher.reject(exc)
            return
        topic = env.topic
        if topic.startswith(reserved.PROBE_PREFIX):
            probe = self._probes.get(topic)
            if probe is not None and not probe.done():
                probe.set_result(None)
            return
        self._dispatcher.deliver(env)

    def statistics(self) -> ClientStatistics:
        return self._dispatcher.statistics(self.client_id, self._published, self._oversized)
