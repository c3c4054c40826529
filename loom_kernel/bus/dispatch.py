"""Routing of received envelopes, the same for every transport.

A transport decodes what arrives and hands each :class:`Envelope` to its
:class:`Dispatcher`, which

- routes replies (topics under the transport's inbox prefix) to the waiting
  :class:`~.transport.ReplyBox` by correlation id, counting late ones;
- detects per-(source, topic) sequence gaps and counts them as lost, on the client and
  on every subscription the stream reaches;
- drops events whose TTL ran out (counted);
- matches the topic exactly against every subscription's compiled pattern (a broker
  filtering by byte prefix delivers ``market.price.BTCUSD`` to ``market.price.BTC``; it
  stops here), with a bounded topic → subscriptions cache, and puts it in their mailboxes.
"""

from __future__ import annotations

import logging
import time

from ..errors import ProtocolError
from ..protocol.envelope import Envelope
from .transport import ClientStatistics, ReplyBox, Subscription

__all__ = ["Dispatcher"]

log = logging.getLogger("loom.client")
_ROUTE_CACHE_LIMIT = 50_000
_SEQ_TRACK_LIMIT = 200_000  # (source, topic) streams remembered for gap detection
_LOG_EVERY = 10.0  # seconds between two log lines about the same kind of trouble


class Dispatcher:
    """Delivers received envelopes to subscriptions and reply boxes (see module doc)."""

    def __init__(self, inbox_prefix: str):
        self.inbox_prefix = inbox_prefix
        self.subscriptions: list[Subscription] = []
        self._routes: dict[str, tuple[Subscription, ...]] = {}
        self._replies: dict[tuple[str, str], ReplyBox] = {}
        self._last_seq: dict[tuple[str, str], int] = {}
        self._logged: dict[str, float] = {}
        self.received = 0
        self.delivered = 0
        self.malformed = 0
        self.lost = 0
        self.gaps = 0
        self.expired = 0
        self.late = 0

    # -- subscriptions and reply boxes -----------------------------------------------

    def add(self, sub: Subscription) -> None:
        self.subscriptions.append(sub)
        self._routes.clear()

    def remove(self, sub: Subscription) -> bool:
        """Forget a subscription; False if it was not here."""
        if sub not in self.subscriptions:
            return False
        self.subscriptions.remove(sub)
        self._routes.clear()
        # Events missed while nobody here listened are not losses: forget where those
        # streams were, so the next event starts them afresh.
        self._last_seq = {
            key: seq
            for key, seq in self._last_seq.items()
            if any(s.pattern.matches(key[1]) for s in self.subscriptions)
        }
        return True

    def close_all(self) -> None:
        for sub in self.subscriptions:
            sub.closed = True
            sub.mailbox.close()
        self.subscriptions.clear()
        self._routes.clear()

    def expect_replies(
        self, inbox: str, correlation_id: str, box: ReplyBox | None = None
    ) -> ReplyBox:
        box = box or ReplyBox()
        self._replies[(inbox, correlation_id)] = box
        return box

    def forget(self, inbox: str, correlation_id: str) -> None:
        self._replies.pop((inbox, correlation_id), None)

    # -- receiving -------------------------------------------------------------------

    def reject(self, exc: ProtocolError | RecursionError) -> None:
        """Count a message that could not be decoded (it is dropped)."""
        self.received += 1
        self.malformed += 1
        self.warn("malformed", "dropped a malformed message (%d so far): %s", self.malformed, exc)

    def deliver(self, env: Envelope) -> None:
        """Route one decoded envelope (the per-event hot path)."""
        self.received += 1
        topic = env.topic
        if topic.startswith(self.inbox_prefix):
            box = self._replies.get((topic, env.correlation_id or ""))
            if box is None:
                self.late += 1
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
            self.expired += 1
            return
        subs = self._routes.get(topic)
        if subs is None:
            subs = self._route(topic)
        for sub in subs:
            sub.mailbox.put_nowait(env)
        self.delivered += len(subs)

    def deliver_many(self, envs: list[Envelope]) -> None:
        """Route the events of one batch, all on one topic: :meth:`deliver`'s work, with
        the route looked up and each mailbox filled once per batch."""
        if not envs:
            return
        topic = envs[0].topic
        if topic.startswith(self.inbox_prefix):
            for env in envs:
                self.deliver(env)
            return
        self.received += len(envs)
        live = envs
        stream, last = None, None  # the (source, topic) stream being checked, its last seq
        last_seq = self._last_seq
        for index, env in enumerate(envs):
            seq = env.seq
            if seq:
                if stream is None or env.source != stream[0]:
                    if stream is not None:
                        last_seq[stream] = last
                    stream = (env.source, topic)
                    last = last_seq.get(stream)
                    if last is None and len(last_seq) >= _SEQ_TRACK_LIMIT:
                        last_seq.clear()  # bounded memory; streams restart their gap check
                if last is not None and seq > last + 1:
                    self._note_gap(env, seq - last - 1)
                last = seq
            if env.ttl_ms and env.expired:
                if live is envs:
                    live = envs[:index]
                self.expired += 1
            elif live is not envs:
                live.append(env)
        if stream is not None:
            last_seq[stream] = last
        subs = self._routes.get(topic)
        if subs is None:
            subs = self._route(topic)
        for sub in subs:
            sub.mailbox.put_many(live)
        self.delivered += len(subs) * len(live)

    def wants(self, topic: str) -> bool:
        """Would :meth:`deliver` put an event on ``topic`` anywhere (a reply box of this
        transport's inbox, or a subscription)?"""
        if topic.startswith(self.inbox_prefix):
            return True
        subs = self._routes.get(topic)
        return bool(subs if subs is not None else self._route(topic))

    def _route(self, topic: str) -> tuple[Subscription, ...]:
        subs = tuple(s for s in self.subscriptions if s.pattern.matches(topic))
        if len(self._routes) >= _ROUTE_CACHE_LIMIT:
            self._routes.clear()
        self._routes[topic] = subs
        return subs

    def _note_gap(self, env: Envelope, missing: int) -> None:
        self.gaps += 1
        self.lost += missing
        subs = self._routes.get(env.topic)
        if subs is None:
            subs = self._route(env.topic)
        for sub in subs:
            sub.mailbox.note_gap(missing)
        self.warn(
            "gap",
            "%d event(s) lost on %r from %r before seq %d (%d lost in all)",
            missing,
            env.topic,
            env.source,
            env.seq,
            self.lost,
        )

    def warn(self, kind: str, message: str, *args: object) -> None:
        """Log a warning, at most once per 10 s per kind (a flood of bad frames must not
        become a flood of log lines); the counters hold the totals."""
        now = time.monotonic()
        if now - self._logged.get(kind, -_LOG_EVERY) >= _LOG_EVERY:
            self._logged[kind] = now
            log.warning(message, *args)

    def statistics(self, client_id: str, published: int, oversized: int = 0) -> ClientStatistics:
        return ClientStatistics(
            client_id=client_id,
            published=published,
            received=self.received,
            delivered=self.delivered,
            malformed=self.malformed,
            lost=self.lost,
            gaps=self.gaps,
            expired=self.expired,
            late_replies=self.late,
            oversized=oversized,
            subscriptions=[
                {"pattern": s.pattern.text, "owner": s.owner, **s.statistics().to_dict()}
                for s in self.subscriptions
            ],
        )
