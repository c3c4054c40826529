"""Reliable publishing: a publisher keeps each event of a reliable topic until the event
log says it has it, and sends it again if it does not.

Events of ``[eventlog] reliable`` topics carry the header ``loom-ack: <client id>``;
the log acknowledges them on ``loom.eventlog.ack.<client id>`` once their transaction
is committed. What stays unacknowledged for ``ack_timeout`` seconds goes to the log
again (on ``loom.eventlog.store``, not to subscribers, who get what they missed from
the log), with a growing delay while the log does not answer. At most
``max_in_flight`` events wait: past that, publishing raises :class:`BusError`.
"""

from __future__ import annotations

import asyncio
import time

from ..errors import BusError
from ..protocol.envelope import Envelope
from .wire import Stream, stream_of

__all__ = ["AckTracker"]

_MAX_DELAY = 8.0  # seconds between two sends of one event at most


class _Waiting:
    __slots__ = ("attempts", "deadline", "env")

    def __init__(self, env: Envelope, deadline: float):
        self.env = env
        self.deadline = deadline
        self.attempts = 0


class AckTracker:
    """Events on reliable topics waiting for the log's ack, per stream, oldest first.

    Args:
        max_in_flight: how many may wait at most.
        ack_timeout: seconds without an ack before an event is sent again.
    """

    def __init__(self, max_in_flight: int, ack_timeout: float):
        self.max_in_flight = max_in_flight
        self.ack_timeout = ack_timeout
        self.in_flight = 0
        self.acked = 0
        self.resent = 0
        self._waiting: dict[Stream, dict[int, _Waiting]] = {}
        self._drained = asyncio.Event()
        self._drained.set()

    def check_room(self, topic: str) -> None:
        """Raise :class:`BusError` when ``max_in_flight`` events wait already."""
        if self.in_flight >= self.max_in_flight:
            raise BusError(
                f"cannot publish on reliable topic {topic!r}: {self.in_flight:,} events wait "
                "for the event log's acknowledgement ([eventlog] max_in_flight). Is the log "
                "running (the bus's process, or `loom log`)? Wait with "
                "`await rt.wait_acknowledged()`, or raise max_in_flight"
            )

    def add(self, env: Envelope) -> None:
        """Keep a published event until the log acknowledges it."""
        waiting = self._waiting.setdefault(stream_of(env), {})
        waiting[env.seq] = _Waiting(env, time.monotonic() + self.ack_timeout)
        self.in_flight += 1
        self._drained.clear()

    def ack(self, ranges: list[tuple[str, str, str, int, int]]) -> None:
        """The log has these events: forget them."""
        for source, topic, epoch, first, last in ranges:
            waiting = self._waiting.get((source, topic, epoch))
            if waiting is None:
                continue
            for seq in range(first, last + 1):
                if waiting.pop(seq, None) is not None:
                    self.in_flight -= 1
                    self.acked += 1
            if not waiting:
                del self._waiting[(source, topic, epoch)]
        if not self.in_flight:
            self._drained.set()

    def overdue(self, now: float) -> list[Envelope]:
        """The events to send again now (each one's next try later and later)."""
        due = []
        for waiting in self._waiting.values():
            oldest = next(iter(waiting.values()))
            if oldest.deadline > now:
                continue  # a stream's events are kept in the order they were sent
            for item in waiting.values():
                if item.deadline <= now:
                    item.attempts += 1
                    item.deadline = now + min(self.ack_timeout * 2**item.attempts, _MAX_DELAY)
                    due.append(item.env)
        self.resent += len(due)
        return due

    async def wait_empty(self, timeout: float | None) -> bool:
        """Wait until every event is acknowledged; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def statistics(self) -> dict[str, int]:
        return {"in_flight": self.in_flight, "acked": self.acked, "resent": self.resent}
