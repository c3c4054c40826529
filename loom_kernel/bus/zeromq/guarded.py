"""The broker's forwarding loop on a CURVE bus: every message judged before it is forwarded.

A plain bus forwards with ZeroMQ's C proxy, which cannot tell who sent what. A CURVE bus
forwards here instead, in Python on the broker's thread: each message's sender is the ZAP
user id ZeroMQ attaches to it (the identity its key pair stands for; none over
``inproc://``: the host's own clients), and the :class:`~loom_kernel.security.guard.Guard`
decides. The XPUB socket is in manual mode, so a subscription takes effect only once the
guard allowed it.

What is refused is counted, logged and published on ``loom.security.denied.<identity>`` (at most
:data:`REPORTS_PER_SEC` a second; the next report says how many were left out).
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable

import zmq

from ...protocol import reserved
from ...protocol.envelope import Envelope, encode_data, encode_frames, new_id
from ...security.guard import Denial, Guard

__all__ = ["REPORTS_PER_SEC", "guarded_proxy"]

log = logging.getLogger("loom.security")
REPORTS_PER_SEC = 20
LOG_EVERY = 60.0  # seconds between two log lines about the same refusal
_DRAIN = 256  # messages taken from one socket before looking at the others


class _Reports:
    """``loom.security.denied.<identity>`` events, at most :data:`REPORTS_PER_SEC` a second."""

    def __init__(self, xpub: zmq.Socket, source: str):
        self._xpub = xpub
        self._source = source
        self._second = 0
        self._sent = 0
        self.left_out = 0
        self._logged: dict[tuple[str, str, str], float] = {}

    def report(self, denial: Denial) -> None:
        second = int(time.monotonic())
        if second != self._second:
            self._second, self._sent = second, 0
        if self._sent >= REPORTS_PER_SEC:
            self.left_out += 1
            return
        self._sent += 1
        key = (denial.identity, denial.action, denial.topic)
        now = time.monotonic()
        if now - self._logged.get(key, -LOG_EVERY) >= LOG_EVERY:  # the same refusal: once a minute
            if len(self._logged) > 10_000:
                self._logged.clear()
            self._logged[key] = now
            log.warning(
                "refused: %s %s by %s: %s (the same again: on loom.security.denied.* only, "
                "for a minute)",
                denial.action, denial.topic, denial.identity, denial.reason,
            )  # fmt: skip
        payload, content_type = encode_data({**denial.to_dict(), "left_out": self.left_out})
        self.left_out = 0
        env = Envelope(
            topic=reserved.security_denied(denial.identity), type="security", source=self._source,
            payload=payload, content_type=content_type, id=new_id(), ts=time.time_ns(),
        )  # fmt: skip
        self._xpub.send_multipart(encode_frames(env))

    def answer(self, denial: Denial) -> None:
        """A refused request gets an error reply at once (not a wait for its timeout)."""
        if not denial.reply_to:
            return
        body = {"error": "AccessDenied", "message": f"the bus refused it: {denial.reason}"}
        payload, content_type = encode_data(body)
        env = Envelope(
            topic=denial.reply_to, type="error", source=self._source, payload=payload,
            content_type=content_type, id=new_id(), ts=time.time_ns(),
            correlation_id=denial.correlation_id,
        )  # fmt: skip
        self._xpub.send_multipart(encode_frames(env))


def _identity(frame: zmq.Frame, host: str) -> str:
    try:
        return frame.get("User-Id") or host
    except zmq.ZMQError:  # inproc: no handshake, so no user id: the host's own client
        return host


def guarded_proxy(
    xsub: zmq.Socket,
    xpub: zmq.Socket,
    control: zmq.Socket,
    guard: Guard,
    source: str,
    *,
    settle: float = 0.0,
    started: Callable[[], None] = lambda: None,
) -> None:
    """Forward from ``xsub`` to ``xpub`` what ``guard`` allows, until ``control`` says
    ``TERMINATE``; ``STATISTICS`` is answered as ZeroMQ's steerable proxy does (eight
    64-bit counters), plus a ninth: the messages refused. ``xpub`` must be in manual mode.

    For ``settle`` seconds first (a broker taking a dead one's address over), only the
    subscriptions are taken (through the guard: in manual mode one not applied is lost),
    so that reconnecting subscribers are back before anything is forwarded; then
    ``started()`` is called.
    """
    reports = _Reports(xpub, source)
    host = guard.host
    # frames in, bytes in, frames out, bytes out: of the frontend, then of the backend
    counts = [0] * 8
    poller = zmq.Poller()
    for sock in (xpub, control):
        poller.register(sock, zmq.POLLIN)
    if _settled(poller, settle, xpub, control, counts, guard, reports):
        return  # told to stop while settling
    started()
    poller.register(xsub, zmq.POLLIN)
    while True:
        ready = dict(poller.poll())
        if control in ready and _command(control, counts, guard):
            return
        if xpub in ready:
            _subscriptions(xpub, guard, reports, host)
        if xsub in ready:
            for _ in range(_DRAIN):
                try:
                    # the first frame as a Frame (it carries the sender's user id), the
                    # rest as bytes (cheaper for small frames)
                    first = xsub.recv(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                frames = [first.bytes, *xsub.recv_multipart()] if first.more else [first.bytes]
                size = sum(len(frame) for frame in frames)
                counts[0] += len(frames)
                counts[1] += size
                denial = _judged(guard, _identity(first, host), frames)
                if denial is not None:
                    reports.report(denial)
                    reports.answer(denial)
                    continue
                xpub.send_multipart(frames)
                counts[6] += len(frames)
                counts[7] += size


def _settled(
    poller: zmq.Poller,
    seconds: float,
    xpub: zmq.Socket,
    control: zmq.Socket,
    counts: list[int],
    guard: Guard,
    reports: _Reports,
) -> bool:
    """Take only subscriptions (and control commands) for ``seconds``; True if told to stop."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ready = dict(poller.poll(max(1, int(left * 1000))))
        if control in ready and _command(control, counts, guard):
            return True
        if xpub in ready:
            _subscriptions(xpub, guard, reports, guard.host)
    return False


def _command(control: zmq.Socket, counts: list[int], guard: Guard) -> bool:
    """Answer one control command; True for ``TERMINATE``."""
    command = control.recv()
    if command == b"STATISTICS":
        values = [*counts, sum(guard.denied.values())]
        control.send_multipart([struct.pack("=Q", value) for value in values])
    return command == b"TERMINATE"


def _subscriptions(xpub: zmq.Socket, guard: Guard, reports: _Reports, host: str) -> None:
    for _ in range(_DRAIN):
        try:
            message = xpub.recv(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return
        _subscription(xpub, message, guard, reports, host)


def _judged(guard: Guard, identity: str, frames: list[bytes]) -> Denial | None:
    """The guard's verdict; a guard that fails refuses (and the broker goes on)."""
    try:
        return guard.publish(identity, frames)
    except Exception:
        log.exception("the guard failed on a message of %s: refused", identity)
        return Denial(identity, "malformed", "", "the broker's guard failed on it (logged)")


def _subscription(
    xpub: zmq.Socket, message: zmq.Frame, guard: Guard, reports: _Reports, host: str
) -> None:
    """A (un)subscription from a subscriber: applied in manual mode once allowed."""
    data = message.bytes
    if not data or data[0] not in (0, 1):
        return
    try:
        identity = message.get("User-Id") or host
        known = True
    except zmq.ZMQError:
        identity, known = host, False
    prefix = data[1:]
    if data[0] == 1:
        try:
            denial = guard.subscribe(identity, prefix)
        except Exception:
            log.exception("the guard failed on a subscription of %s: refused", identity)
            denial = Denial(identity, "subscribe", "", "the broker's guard failed on it")
        if denial is not None:
            reports.report(denial)
            return
        xpub.setsockopt(zmq.SUBSCRIBE, prefix)
        return
    guard.unsubscribed(identity, prefix)
    # An unsubscription without metadata is an in-process client's, or one ZeroMQ makes
    # for a closed connection (then it already dropped the subscriptions, and the manual
    # unsubscribe would hit whichever subscriber spoke last): leave the subscription; the
    # in-process client filters what it no longer wants.
    if known:
        xpub.setsockopt(zmq.UNSUBSCRIBE, prefix)
