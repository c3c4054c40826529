"""A durable ``reliable`` subscription: no event missed, none handled twice, in order.

Its :class:`DurableMailbox` sits where a plain reliable mailbox would (the client's
receive loop fills it); its :class:`Recovery` task talks to the event log:

- **Restart.** Until the cursor (named ``<agent id>:<pattern>``) is resumed, live
  events wait. The log answers where the cursor stands (the last sequence number
  handled per stream) and which ranges it has not handled; those are fetched in pages
  and queued, then the waiting live events follow.
- **Gap.** A live event whose sequence number skips some holds back every later
  event of its *source*; the missing ones are fetched from the log and queued first.
  When the log does not have them either, they are counted lost; on a reliable topic
  (its events carry an ack header) their publisher sends them to the log again, so the
  subscriber asks again until ``[eventlog] gap_timeout``.
- **Duplicates** (a replayed event that also arrived live) are dropped by (stream, seq).
- **Cursor.** Taking the next event means the one before was handled: its position
  is stored at once in the subscription's local journal (:mod:`.journal`, a memory
  write that survives ``kill -9``), and committed to the log every ``commit_interval``,
  when the mailbox runs empty, and once more, awaited, when the subscription closes. A
  restart merges the journal with the log's cursor, so an event whose handler finished
  is not delivered again; only the one whose handler was running at the crash is (see
  ``docs/durability.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from ..bus.qos import Mailbox, MailboxStatistics
from ..config import EventLogConfig
from ..errors import LoomError, LoomTimeoutError, ProtocolError
from ..protocol import reserved
from ..protocol.envelope import Envelope
from .journal import CursorJournal
from .wire import (
    ACK_HEADER,
    Commit,
    Fetch,
    Fetched,
    Message,
    Position,
    Range,
    Resume,
    Resumed,
    Stream,
    envelope_of,
    stream_of,
)

__all__ = ["Ask", "DurableMailbox", "DurableStatistics", "Recovery"]

log = logging.getLogger("loom.eventlog")
#: Sends a request to the event log: ``ask(topic, message, expected type, timeout, tries)``.
Ask = Callable[[str, Message, Any, float, int], Awaitable[Any]]
_PAGE = 5000  # events per fetch
_ROOM = 20_000  # queued events before a resume stops fetching for a while
_RETRY = 0.2  # seconds between two asks for events a publisher will send again
_PATIENCE = 10  # tries of a resume's requests before going on without the log


@dataclass(frozen=True)
class DurableStatistics(MailboxStatistics):
    """A durable subscription's counters, beside the mailbox's."""

    cursor: str | None
    durable: bool
    replayed: int
    duplicates: int
    held: int
    expired: int  # replayed events whose TTL ran out in the log: not delivered


@dataclass
class _Repair:
    after: int  # the last sequence number queued
    before: int  # the one that arrived
    acked: bool  # a reliable topic: its publisher sends missing events again
    since: float


class DurableMailbox(Mailbox):
    """The mailbox of a durable subscription (see the module docstring).

    Args:
        maxsize: its bound, as a reliable mailbox's.
        cursor: the cursor's name, or None for gap repair without a cursor (a
            subscription of code outside agents, whose name changes every run).
        pattern: the subscription's pattern.
        commit: publishes a commit (fire and forget).
        commit_interval: seconds between two commits while events flow.
        journal: where each handled position is stored at once (None: the log's
            cursor alone, at least once after a crash).
    """

    qos = "reliable"

    def __init__(
        self,
        maxsize: int,
        *,
        cursor: str | None,
        pattern: str,
        commit: Callable[[Commit], None],
        commit_interval: float = 0.05,
        journal: CursorJournal | None = None,
    ):
        super().__init__(maxsize)
        self.journal = journal
        self.cursor = cursor
        self.pattern = pattern
        self.durable = True
        self.work = asyncio.Event()
        self.replayed = self.duplicates = self.expired = 0
        self._commit = commit
        self._interval = commit_interval
        self._last: dict[Stream, int] = {}  # the last sequence number queued, per stream
        self._dirty: dict[Stream, int] = {}  # handled since the last commit
        self._held: dict[str, deque[Envelope]] = {}  # per source, behind a gap
        self._early: deque[Envelope] | None = deque()  # live events before the resume
        self._repairs: dict[Stream, _Repair] = {}
        self._current: Envelope | None = None
        self._committed_at = time.monotonic()
        self._room: asyncio.Event | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    # -- what arrives ------------------------------------------------------------------

    def put_nowait(self, item: Any) -> None:
        self.received += 1
        self._live(item)

    def _live(self, env: Envelope) -> None:
        if self._early is not None:
            self._early.append(env)
            return
        held = self._held.get(env.source)
        if held is not None:
            held.append(env)
            return
        self._offer(env, replayed=False)

    def _offer(self, env: Envelope, *, replayed: bool) -> None:
        seq = env.seq
        if not seq:  # not sequenced: nothing to check
            self.push(env)
            return
        stream = stream_of(env)
        last = self._last.get(stream)
        if last is None:
            last = seq - 1  # the first event seen sets the baseline
        elif seq <= last:
            if replayed or stream[2]:
                self.duplicates += 1
                return
            last = seq - 1  # ids not made by Loom: a publisher that restarted
        if seq > last + 1:
            if not replayed and self.durable:
                self._held[env.source] = deque([env])
                acked = bool(env.headers and ACK_HEADER in env.headers)
                self._repairs[stream] = _Repair(last, seq, acked, time.monotonic())
                self.work.set()
                return
            self.gaps += 1  # the log lacks them too (or there is no log)
            self.lost += seq - last - 1
        self._last[stream] = seq
        if replayed:
            if env.ttl_ms and env.expired:  # its time ran out while it waited in the log
                self.expired += 1
                return
            self.replayed += 1
        self.push(env)

    def note_gap(self, missing: int) -> None:
        """The client's own gap count (per source and topic); this mailbox counts what it
        could not repair instead."""

    # -- what the recovery task does -------------------------------------------------

    def start_from(self, positions: list[Position]) -> None:
        """The cursor as the log keeps it: what was handled, per stream."""
        for p in positions:
            stream = (p.source, p.topic, p.epoch)
            self._last[stream] = max(self._last.get(stream, 0), p.seq)
        if self.journal is None:
            return
        for stream, seq in self.journal.positions().items():  # handled after the last commit
            if seq > self._last.get(stream, 0):
                self._last[stream] = self._dirty[stream] = seq

    def offer_replayed(self, events: list[Envelope]) -> None:
        for env in events:
            self._offer(env, replayed=True)

    def resumed(self, *, durable: bool = True) -> None:
        """The backlog is queued: the live events that waited follow."""
        self.durable = durable
        early, self._early = self._early, None
        for env in early or ():
            self._live(env)

    def take_repairs(self) -> dict[Stream, _Repair]:
        repairs, self._repairs = self._repairs, {}
        return repairs

    def settle(self, repairs: dict[Stream, _Repair], wait: float, *, slow: bool = False) -> bool:
        """After a fetch: count what is still missing as lost, or keep asking for it
        (True) for up to ``wait`` seconds while its publisher may still send it again, or
        while the log is too ``slow`` to answer; release held sources."""
        now = time.monotonic()
        waiting = False
        for stream, repair in repairs.items():
            last = self._last.get(stream, repair.after)
            if last >= repair.before - 1:
                continue
            if (repair.acked or slow) and now - repair.since < wait and self.durable:
                self._repairs[stream] = _Repair(last, repair.before, repair.acked, repair.since)
                waiting = True
                continue
            self.gaps += 1
            self.lost += repair.before - 1 - last
            self._last[stream] = repair.before - 1
            log.warning(
                "%d event(s) on %r from %r are not in the event log either: lost",
                repair.before - 1 - last,
                stream[1],
                stream[0],
            )
        pending = {stream[0] for stream in self._repairs}
        for source in list(self._held):
            if source not in pending:
                self._release(source)
        return waiting

    def _release(self, source: str) -> None:
        held = self._held.pop(source, None)
        while held:
            self._offer(held.popleft(), replayed=False)
            again = self._held.get(source)
            if again is not None:  # a new gap: the rest waits behind it
                again.extend(held)
                return

    async def wait_room(self) -> None:
        """Wait until the consumer has taken most of what is queued (a long backlog is
        fetched page by page, not all at once)."""
        while len(self._items) >= _ROOM and not self._closed:
            self._room = asyncio.Event()
            await self._room.wait()

    # -- the consumer and the cursor ---------------------------------------------------

    async def get(self) -> Any:
        self._finish()
        if not self._items:
            self.flush_commit()
            await self._wait()
        elif time.monotonic() - self._committed_at >= self._interval:
            self.flush_commit()
        env = self._items.popleft()
        self._current = env
        room = self._room
        if room is not None and len(self._items) < _ROOM // 2:
            room.set()
        return env

    def get_nowait(self) -> Any:
        self._finish()
        env = self._items.popleft()
        self._current = env
        return env

    def _finish(self) -> None:
        current, self._current = self._current, None
        if current is not None and current.seq:
            stream = stream_of(current)
            self._dirty[stream] = current.seq
            if self.journal is not None:
                self.journal.mark(stream, current.seq)

    def flush_commit(self) -> None:
        """Send the positions handled since the last commit (fire and forget)."""
        self._committed_at = time.monotonic()
        if self.cursor is None or not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        self._commit(Commit(self.cursor, self.pattern, _positions(dirty)))

    def closing_commit(self) -> Commit | None:
        """The last commit, marked ``close`` (a clean stop)."""
        if self.cursor is None:
            return None
        dirty, self._dirty = self._dirty, {}
        return Commit(self.cursor, self.pattern, _positions(dirty), close=True)

    def close(self) -> None:
        super().close()
        self.work.set()
        if self._room is not None:
            self._room.set()

    def statistics(self) -> DurableStatistics:
        base = super().statistics()
        return DurableStatistics(
            **base.to_dict(),
            cursor=self.cursor,
            durable=self.durable,
            replayed=self.replayed,
            duplicates=self.duplicates,
            held=sum(len(h) for h in self._held.values()) + len(self._early or ()),
            expired=self.expired,
        )


class Recovery:
    """The task that keeps one durable subscription whole (see the module docstring)."""

    def __init__(self, mailbox: DurableMailbox, ask: Ask, settings: EventLogConfig):
        self.mailbox = mailbox
        self.ask = ask
        self.settings = settings

    async def run(self) -> None:
        mailbox = self.mailbox
        try:
            await self._resume()
            while not mailbox.closed:
                await mailbox.work.wait()
                mailbox.work.clear()
                await self._repair()
        finally:
            commit = mailbox.closing_commit()
            if mailbox.journal is not None:
                mailbox.journal.close()
            if commit is not None:
                with contextlib.suppress(LoomError, TimeoutError):
                    timeout = min(self.settings.request_timeout, 1.0)
                    await self.ask(reserved.EVENTLOG_COMMIT, commit, None, timeout, 1)

    async def _resume(self) -> None:
        mailbox = self.mailbox
        if mailbox.cursor is None:
            mailbox.resumed()
            return
        try:
            resumed: Resumed = await self._ask_patiently(
                reserved.EVENTLOG_RESUME, Resume(mailbox.cursor, mailbox.pattern), Resumed
            )
            mailbox.start_from(resumed.positions)
            async for events in self._pages(resumed.ranges, patient=True):
                mailbox.offer_replayed(events)
                await mailbox.wait_room()
        except (LoomError, TimeoutError) as exc:
            log.warning(
                "subscription %r goes on without the event log (%s): gaps are counted, "
                "not repaired, and nothing missed while it was stopped is replayed",
                mailbox.cursor,
                exc,
            )
            mailbox.resumed(durable=False)
            return
        mailbox.resumed()

    async def _repair(self) -> None:
        mailbox = self.mailbox
        repairs = mailbox.take_repairs()
        if not repairs:
            return
        ranges = [Range(*stream, r.after, r.before) for stream, r in repairs.items()]
        settings, slow = self.settings, False
        try:
            async for events in self._pages(ranges):
                mailbox.offer_replayed(events)
        except LoomTimeoutError as exc:  # busy writing a burst: it may have them
            slow = True
            log.warning("the event log is slow to send missed events, asking again: %s", exc)
        except LoomError as exc:
            log.warning("could not fetch missed events from the event log: %s", exc)
        wait = settings.gap_timeout + (_PATIENCE * settings.request_timeout if slow else 0.0)
        if mailbox.settle(repairs, wait, slow=slow):
            loop = asyncio.get_running_loop()
            loop.call_later(_RETRY, mailbox.work.set)

    async def _ask_patiently(self, topic: str, message: Message, expected: Any) -> Any:
        """Ask, and keep asking while the log is slow to answer (busy writing a burst, or
        starting): a subscription resuming holds its live events meanwhile, and giving up
        would lose what it missed. ``LoomTimeoutError`` after ``_PATIENCE`` timeouts."""
        timeout = self.settings.request_timeout
        return await self.ask(topic, message, expected, timeout, _PATIENCE)

    async def _pages(
        self, ranges: list[Range], *, patient: bool = False
    ) -> AsyncIterator[list[Envelope]]:
        """The events of ``ranges``, a page at a time (``patient``: see
        :meth:`_ask_patiently`)."""
        while ranges:
            fetch = Fetch(ranges, _PAGE)
            if patient:
                page: Fetched = await self._ask_patiently(reserved.EVENTLOG_FETCH, fetch, Fetched)
            else:
                timeout = self.settings.request_timeout
                page = await self.ask(reserved.EVENTLOG_FETCH, fetch, Fetched, timeout, 1)
            events = []
            highest: dict[Stream, int] = {}
            for record in page.events:
                try:
                    env = envelope_of(record)
                except ProtocolError:
                    continue
                events.append(env)
                highest[(env.source, env.topic, record.epoch)] = env.seq
            yield events
            if not page.more:
                return
            ranges = [
                msgspec.structs.replace(r, after=highest.get((r.source, r.topic, r.epoch), r.after))
                for r in ranges
            ]


def _positions(handled: dict[Stream, int]) -> list[Position]:
    return [Position(source, topic, epoch, seq) for (source, topic, epoch), seq in handled.items()]
