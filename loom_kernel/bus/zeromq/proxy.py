"""The broker's forwarding loop in Python, for a broker that must look at subscriptions.

ZeroMQ's C proxy forwards without the GIL, but applies each subscription on its own. A
broker forwards here instead when it must see a subscription before it takes effect: to
count who listens to what (:class:`~.listeners.Listeners`: the clients of the process
hosting the bus then send nothing no other client subscribes to), or to judge every
message and subscription on a CURVE bus (:class:`~.guarded.GuardGate`). The XPUB socket
is in manual mode: a subscription is live once this loop applied it, after counting it.

Messages are forwarded as ZeroMQ frames, not copied; a batch is one message, so the cost
per event is small when events travel in batches.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable

import zmq

from .listeners import Listeners

__all__ = ["Gate", "python_proxy"]

_DRAIN = 256  # messages taken from one socket before looking at the others


class Gate:
    """What a Python broker lets through: everything (a plain bus). A subclass judges."""

    #: Frames after the first arrive as bytes (cheaper to read when small), not as
    #: ``zmq.Frame`` (forwarded without a copy); the first is always a Frame (its metadata).
    reads_bytes = False

    def forward(self, first: zmq.Frame, frames: list[zmq.Frame | bytes]) -> bool:
        """Whether to forward this message, ``frames`` (``first`` is its first)."""
        return True

    def subscribe(self, message: zmq.Frame, prefix: bytes) -> bool:
        """Whether to apply this subscription."""
        return True

    def unsubscribed(self, message: zmq.Frame, prefix: bytes) -> None:
        """A subscriber dropped a prefix (nothing to decide: it is taken off anyway)."""

    def denied(self) -> int:
        """Messages refused so far."""
        return 0


def python_proxy(
    xsub: zmq.Socket,
    xpub: zmq.Socket,
    control: zmq.Socket,
    gate: Gate,
    *,
    listeners: Listeners | None = None,
    settle: float = 0.0,
    started: Callable[[], None] = lambda: None,
) -> None:
    """Forward from ``xsub`` to ``xpub`` what ``gate`` lets through, until ``control``
    says ``TERMINATE``; ``STATISTICS`` is answered as ZeroMQ's steerable proxy does (eight
    64-bit counters), plus a ninth: the messages refused. ``xpub`` must be in manual mode;
    every (un)subscription is recorded in ``listeners`` (when given) before it is applied.

    For ``settle`` seconds first (a broker taking a dead one's address over), only the
    subscriptions are taken, so that reconnecting subscribers are back before anything
    is forwarded; then ``started()`` is called.
    """
    # frames in, bytes in, frames out, bytes out: of the frontend, then of the backend
    counts = [0] * 8
    poller = zmq.Poller()
    for sock in (xpub, control):
        poller.register(sock, zmq.POLLIN)
    deadline = time.monotonic() + settle
    while (left := deadline - time.monotonic()) > 0:
        ready = dict(poller.poll(max(1, int(left * 1000))))
        if control in ready and _command(control, counts, gate):
            return  # told to stop while settling
        if xpub in ready:
            _subscriptions(xpub, gate, listeners)
    started()
    poller.register(xsub, zmq.POLLIN)
    while True:
        ready = dict(poller.poll())
        if control in ready and _command(control, counts, gate):
            return
        if xpub in ready:
            _subscriptions(xpub, gate, listeners)
        if xsub in ready:
            _forward(xsub, xpub, gate, counts)


def _forward(xsub: zmq.Socket, xpub: zmq.Socket, gate: Gate, counts: list[int]) -> None:
    for _ in range(_DRAIN):
        try:
            first = xsub.recv(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        frames = [first, *xsub.recv_multipart(copy=gate.reads_bytes)] if first.more else [first]
        size = sum(len(frame) for frame in frames)
        counts[0] += len(frames)
        counts[1] += size
        if gate.forward(first, frames):
            xpub.send_multipart(frames, copy=False)
            counts[6] += len(frames)
            counts[7] += size


def _command(control: zmq.Socket, counts: list[int], gate: Gate) -> bool:
    """Answer one control command; True for ``TERMINATE``."""
    command = control.recv()
    if command == b"STATISTICS":
        control.send_multipart([struct.pack("=Q", value) for value in [*counts, gate.denied()]])
    return command == b"TERMINATE"


def _subscriptions(xpub: zmq.Socket, gate: Gate, listeners: Listeners | None) -> None:
    for _ in range(_DRAIN):
        try:
            message = xpub.recv(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        data = message.bytes
        if not data or data[0] not in (0, 1):
            continue
        prefix, subscribe = data[1:], data[0] == 1
        if listeners is not None:
            listeners.record(subscribe, prefix)  # counted before it is live
        if subscribe:
            if gate.subscribe(message, prefix):
                xpub.setsockopt(zmq.SUBSCRIBE, prefix)
            continue
        gate.unsubscribed(message, prefix)
        # An unsubscription without metadata is an in-process client's, or one ZeroMQ
        # makes for a closed connection (then it already dropped the subscriptions, and a
        # manual unsubscribe could hit whichever subscriber spoke last): leave the
        # subscription; the in-process client filters what it no longer wants.
        if _from_connection(message):
            xpub.setsockopt(zmq.UNSUBSCRIBE, prefix)


def _from_connection(message: zmq.Frame) -> bool:
    """Whether a message came over tcp/ipc (it carries the peer's metadata; inproc does not)."""
    try:
        return message.get("Socket-Type") is not None
    except zmq.ZMQError:
        return False
