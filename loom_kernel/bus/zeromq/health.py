"""What a client knows of its bus's health, from the broker's beats (``loom.bus.beat``).

A broker started by Loom beats every ``[bus] beat_interval`` seconds from a thread of its
own. A client watches it from the moment it connects when it knows the bus beats (the
discovery record says so), else from the first beat it hears: no beat for ``[bus]
lost_after`` seconds (at least three beat intervals), while nothing waits unread on its
socket, means the bus is lost. A beat from a new broker run (another ``epoch``) means the
bus was replaced at the same address, even if no silence was noticed (a quick restart).
A client that never heard a beat of a bus not known to beat (a foreign broker, an older
Loom) never declares it lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["BusHealth"]


@dataclass
class BusHealth:
    """The state of one client's bus and the counters it reports (``statistics().bus``)."""

    lost_after: float
    watched: bool = False  # True once the bus is known to beat
    state: str = "up"  # up | lost
    epoch: str | None = None
    reason: str = ""
    last_beat: float = 0.0  # time.monotonic() of the last beat
    lost_at: float = 0.0
    lost: int = 0  # times the bus was lost (or found replaced)
    failovers: int = 0  # times it answered again afterwards
    last_outage_ms: float = 0.0
    longest_outage_ms: float = 0.0

    def expect(self, now: float) -> None:
        """The bus is known to beat: watch it from now on, before its first beat."""
        self.watched = True
        self.last_beat = now

    def beat(self, epoch: str, interval: float, now: float) -> bool:
        """Record a beat; True when it comes from another broker than the last one did."""
        if interval > 0:
            self.lost_after = max(self.lost_after, 3 * interval)
        self.last_beat = now
        self.watched = True
        replaced = self.epoch is not None and epoch != self.epoch
        self.epoch = epoch
        return replaced

    def silent(self, now: float) -> bool:
        """True when a watched bus that was up has not beaten for ``lost_after`` seconds."""
        return self.watched and self.state == "up" and now - self.last_beat > self.lost_after

    def mark_lost(self, now: float, reason: str) -> None:
        self.state = "lost"
        self.reason = reason
        self.lost_at = now
        self.lost += 1

    def mark_up(self, now: float) -> float:
        """The bus answers again; returns how long it was lost, in seconds."""
        outage = now - self.lost_at
        self.state = "up"
        self.failovers += 1
        self.last_beat = now
        self.last_outage_ms = round(outage * 1000, 1)
        self.longest_outage_ms = max(self.longest_outage_ms, self.last_outage_ms)
        return outage

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "epoch": self.epoch,
            "lost": self.lost,
            "failovers": self.failovers,
            "last_outage_ms": self.last_outage_ms,
            "longest_outage_ms": self.longest_outage_ms,
        }
