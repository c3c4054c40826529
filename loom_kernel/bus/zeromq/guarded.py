"""The broker's gate on a CURVE bus: every message and subscription judged first.

ZeroMQ's C proxy cannot tell who sent what. A CURVE broker forwards through the Python
loop of :mod:`.proxy` instead, with this gate: each message's sender is the ZAP user id
ZeroMQ attaches to it (the identity its key pair stands for; none over ``inproc://``: the
host's own clients), and the :class:`~loom_kernel.security.guard.Guard` decides. The XPUB
socket is in manual mode, so a subscription takes effect only once the guard allowed it.

What is refused is counted, logged and published on ``loom.security.denied.<identity>`` (at most
:data:`REPORTS_PER_SEC` a second; the next report says how many were left out).
"""

from __future__ import annotations

import logging
import time

import zmq

from ...protocol import reserved
from ...protocol.envelope import Envelope, encode_data, encode_frames, new_id
from ...security.guard import Denial, Guard
from .proxy import Gate

__all__ = ["REPORTS_PER_SEC", "GuardGate"]

log = logging.getLogger("loom.security")
REPORTS_PER_SEC = 20
LOG_EVERY = 60.0  # seconds between two log lines about the same refusal


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


class GuardGate(Gate):
    """Lets through what ``guard`` allows; reports and answers what it refuses (as
    ``source``, on ``xpub``)."""

    reads_bytes = True  # the guard reads every frame

    def __init__(self, guard: Guard, xpub: zmq.Socket, source: str):
        self._guard = guard
        self._reports = _Reports(xpub, source)

    def forward(self, first: zmq.Frame, frames: list[zmq.Frame | bytes]) -> bool:
        guard = self._guard
        identity = _identity(first, guard.host)
        try:
            denial = guard.publish(identity, [first.bytes, *frames[1:]])  # type: ignore[list-item]
        except Exception:
            log.exception("the guard failed on a message of %s: refused", identity)
            denial = Denial(identity, "malformed", "", "the broker's guard failed on it (logged)")
        if denial is None:
            return True
        self._reports.report(denial)
        self._reports.answer(denial)
        return False

    def subscribe(self, message: zmq.Frame, prefix: bytes) -> bool:
        identity = _identity(message, self._guard.host)
        try:
            denial = self._guard.subscribe(identity, prefix)
        except Exception:
            log.exception("the guard failed on a subscription of %s: refused", identity)
            denial = Denial(identity, "subscribe", "", "the broker's guard failed on it")
        if denial is not None:
            self._reports.report(denial)
            return False
        return True

    def unsubscribed(self, message: zmq.Frame, prefix: bytes) -> None:
        self._guard.unsubscribed(_identity(message, self._guard.host), prefix)

    def denied(self) -> int:
        return sum(self._guard.denied.values())


def _identity(frame: zmq.Frame, host: str) -> str:
    try:
        return frame.get("User-Id") or host
    except zmq.ZMQError:  # inproc: no handshake, so no user id: the host's own client
        return host
