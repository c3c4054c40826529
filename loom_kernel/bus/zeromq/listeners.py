"""Who listens to what on a bus: the broker's count of its subscribers' prefixes.

A broker that counts (``[bus] filter_at_source``, the process hosting the bus) reads every
subscription and unsubscription its XPUB socket receives before it applies it (the socket
is in manual mode: :mod:`.proxy`), and records it here first. A client of the same process
asks :meth:`Listeners.heard_elsewhere` before it sends an event: when no other client
subscribes to a prefix of its topic, the event is delivered to its own subscriptions in
process and not sent at all.

Why that loses nothing: a subscriber's ``subscribe()`` returns once its probe, subscribed
after the real prefix on the same connection, came back through the broker, so after the
broker applied the probe's subscription, so after it counted the prefix here. An event
published after that sees the count. Counting is conservative: a prefix is counted once
for every subscription message, and taken off for every unsubscription (a subscriber's
own, or the ones ZeroMQ makes for each prefix of a closed connection); an unknown client
that subscribes twice to one prefix stays counted, which only means sending.

Copy on write: the broker's thread replaces the whole mapping, then bumps ``version``; a
reader takes ``version`` first, then the mapping, and never sees one change under it.
"""

from __future__ import annotations

import itertools
from collections.abc import Container

__all__ = ["Listeners", "SourceFilter"]

_CACHED = 4096  # topics whose answer a client keeps


class Listeners:
    """The prefixes a broker's subscribers asked for, each with how many asked."""

    __slots__ = ("_counts", "version")

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        #: Bumped after every change: a reader caching answers starts again when it moves.
        self.version = 0

    def record(self, subscribe: bool, prefix: bytes) -> None:
        """One (un)subscription the broker's XPUB socket received (called on its thread,
        before the subscription is applied)."""
        key = prefix.decode("utf-8", "surrogateescape")
        counts = dict(self._counts)
        count = counts.get(key, 0) + (1 if subscribe else -1)
        if count > 0:
            counts[key] = count
        else:
            counts.pop(key, None)  # never below zero: more unsubscriptions are harmless
        self._counts = counts
        self.version += 1

    def heard_elsewhere(self, topic: str, own: Container[str]) -> bool:
        """Whether a client other than the asking one subscribes to a prefix of ``topic``.

        ``own``: the asker's prefixes that the broker has counted already (each is one of
        the counts, so it is taken off)."""
        for prefix, count in self._counts.items():
            if topic.startswith(prefix) and count > (prefix in own):
                return True
        return False

    def counts(self) -> dict[str, int]:
        """A copy: subscriptions per prefix, everyone's."""
        return dict(self._counts)


class SourceFilter:
    """One client's side of a broker's :class:`Listeners`: whether anyone else listens.

    The client tells it each prefix its SUB socket subscribes to or drops, and each probe
    that came back; it subtracts a prefix of its own only once a probe proved the broker
    counted it (subscribed before the probe, on the same connection, so counted first).
    Answers are kept per topic until the count or the confirmed prefixes change.
    """

    __slots__ = ("_at", "_clock", "_confirmed", "_heard", "_key", "_version", "listeners")

    def __init__(self, listeners: Listeners | None):
        #: None: nothing is known, everything is sent.
        self.listeners = listeners
        self._clock = itertools.count(1)
        self._at: dict[str, int] = {}  # our subscribed prefixes, when each was subscribed
        self._confirmed: set[str] = set()  # ours that the broker has counted
        self._version = 0
        self._heard: dict[str, bool] = {}
        self._key = (-1, -1)

    def subscribed(self, prefix: str) -> None:
        """Our SUB socket subscribed to ``prefix``."""
        self._at[prefix] = next(self._clock)

    def mark(self, prefix: str) -> int:
        """When ``prefix`` was subscribed (0: it is not): what a probe on it confirms."""
        return self._at.get(prefix, 0)

    def unsubscribed(self, prefix: str) -> None:
        """Our SUB socket dropped ``prefix`` (the broker may count it a while yet: then it
        counts as someone else's, which only means sending)."""
        self._at.pop(prefix, None)
        if prefix in self._confirmed:
            self._confirmed.discard(prefix)
            self._version += 1

    def confirm(self, mark: int) -> None:
        """The probe subscribed at ``mark`` came back: the broker applied its subscription,
        so it had counted every prefix we subscribed before it."""
        counted = {prefix for prefix, at in self._at.items() if at < mark}
        if not counted <= self._confirmed:
            self._confirmed |= counted
            self._version += 1

    def heard_elsewhere(self, topic: str) -> bool:
        """Whether another client subscribes to a prefix of ``topic`` (True when unknown)."""
        listeners = self.listeners
        if listeners is None:
            return True
        key = (listeners.version, self._version)  # read before the count is
        if key != self._key:
            self._heard.clear()
            self._key = key
        heard = self._heard.get(topic)
        if heard is None:
            if len(self._heard) >= _CACHED:
                self._heard.clear()
            heard = self._heard[topic] = listeners.heard_elsewhere(topic, self._confirmed)
        return heard
