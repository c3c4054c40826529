"""The event log's file: recorded events, their streams and the subscribers' cursors.

One SQLite file (WAL mode). Events are kept as they travelled (topic, header JSON,
payload bytes) in log order (``pos``), indexed by time and by (stream, seq), where a
stream is ``(source, topic, epoch)`` (:mod:`.wire`) and has a row of its own, indexed by
topic. One thread writes (:meth:`EventLog.append`, :meth:`EventLog.resume`,
:meth:`EventLog.purge`: the service's writer); any thread or process may read.

>>> log = EventLog(".loom/events.db")                              # doctest: +SKIP
>>> for item in log.query(since=timedelta(minutes=5), topics=["orders.*"]):
...     print(item.pos, item.event.topic, item.event.data)
"""

from __future__ import annotations

import heapq
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import LoomError, ProtocolError
from ..protocol.envelope import Envelope, encode_frames
from ..protocol.topics import Pattern, compile_pattern
from .wire import (
    ACK_HEADER,
    Ack,
    Commit,
    Fetched,
    Position,
    Range,
    Record,
    Resumed,
    Stream,
    envelope_of,
    epoch_of,
)

__all__ = ["EventLog", "EventLogStatistics", "LoggedEvent", "When", "when_ns"]

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, topic TEXT NOT NULL, epoch TEXT NOT NULL,
    first_pos INTEGER NOT NULL, last_pos INTEGER NOT NULL, max_seq INTEGER NOT NULL,
    UNIQUE (source, topic, epoch)
);
CREATE INDEX IF NOT EXISTS streams_topic ON streams (topic);
CREATE TABLE IF NOT EXISTS events (
    pos INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, stream INTEGER NOT NULL,
    seq INTEGER NOT NULL, header BLOB NOT NULL, payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events (ts);
CREATE UNIQUE INDEX IF NOT EXISTS events_stream ON events (stream, seq) WHERE seq > 0;
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY, pattern TEXT NOT NULL, created_pos INTEGER NOT NULL,
    created_ns INTEGER NOT NULL, committed_ns INTEGER NOT NULL, closed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursor_streams (
    cursor TEXT NOT NULL, stream INTEGER NOT NULL, seq INTEGER NOT NULL,
    PRIMARY KEY (cursor, stream)
) WITHOUT ROWID;
"""
_INSERT = "INSERT OR IGNORE INTO events (ts, stream, seq, header, payload) VALUES (?, ?, ?, ?, ?)"
_PURGE_CHUNK = 20_000
_STREAM_CACHE = 100_000
#: A time: epoch seconds, a datetime, a timedelta back from now, or None (no bound).
When = float | datetime | timedelta | None


@dataclass(frozen=True)
class LoggedEvent:
    """One event of the log: its position (log order) and the event as it travelled."""

    pos: int
    event: Envelope


@dataclass(frozen=True)
class EventLogStatistics:
    """What the log file holds."""

    events: int
    streams: int
    cursors: int
    bytes: int
    first_pos: int
    last_pos: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class EventLog:
    """Recorded events in one SQLite file (see the module docstring).

    Args:
        path: the file (created with its folder on first use).
        synchronous: ``"normal"`` (a commit survives a crash of the process) or
            ``"full"`` (it survives a power cut too).
        retention_hours: :meth:`purge` drops events older than this.
        max_size_mb: :meth:`purge` drops the oldest events past this much data.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "normal",
        retention_hours: float = 24.0,
        max_size_mb: float = 1024.0,
    ):
        self.path = Path(path)
        self.synchronous = synchronous.upper()
        self.retention_hours = retention_hours
        self.max_bytes = int(max_size_mb * 1024 * 1024)
        self._local = threading.local()
        # the writer's own: stream ids, and the epochs of streams whose ids are not Loom's
        self._streams: dict[Stream, int] = {}
        self._foreign: dict[tuple[str, str], list[Any]] = {}
        self._runs: dict[tuple[str, str, str], tuple[int, Stream]] = {}

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")  # only before the first table
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(f"PRAGMA synchronous={self.synchronous}")
                if db.execute("PRAGMA user_version").fetchone()[0] < _SCHEMA_VERSION:
                    db.executescript(_SCHEMA)
                    db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            except (sqlite3.Error, OSError) as exc:
                raise LoomError(
                    f"cannot open the event log {self.path}: {exc} (set [eventlog] path to a "
                    "writable file)"
                ) from None
            self._local.db = db
        return db

    def close(self) -> None:
        """Close this thread's connection."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- writing (the writer thread) ---------------------------------------------------

    def append(
        self, events: Sequence[Envelope], commits: Sequence[Commit] = ()
    ) -> list[tuple[str, Ack]]:
        """Store events (one already stored is ignored) and cursor commits in one
        transaction; returns the acks owed to publishers of reliable topics, by client."""
        db = self._db()
        owed: dict[str, dict[Stream, list[int]]] = {}
        db.execute("BEGIN IMMEDIATE")
        try:
            start = _next_pos(db)
            rows, touched = [], {}
            runs = self._runs
            for env in events:  # the hot loop: ~100k events/s, so lookups are inlined
                run = runs.get((env.source, env.topic, env.id[:13]))
                if run is None:
                    run = self._run(db, env, start)
                sid, stream = run
                seq = env.seq
                rows.append((env.ts, sid, seq, encode_frames(env)[1], env.payload))
                if seq > touched.get(sid, 0):
                    touched[sid] = seq
                client = env.headers.get(ACK_HEADER) if env.headers else None
                if client and seq:
                    owed.setdefault(client, {}).setdefault(stream, []).append(seq)
            db.executemany(_INSERT, rows)
            end = _next_pos(db) - 1
            db.executemany(
                "UPDATE streams SET last_pos = ?, max_seq = max(max_seq, ?) WHERE id = ?",
                [(end, seq, sid) for sid, seq in touched.items()],
            )
            for commit in commits:
                self._commit(db, commit, end)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._forget()  # ids of streams created in the rolled-back transaction
            raise
        return [(client, Ack(_ack_ranges(acks))) for client, acks in owed.items()]

    def _run(self, db: sqlite3.Connection, env: Envelope, start: int) -> tuple[int, Stream]:
        """The stream of ``env`` and its id, remembered by (source, topic, id prefix) when
        the id is Loom's (other ids are told apart by their sequence numbers, each time)."""
        stream = self._stream_key(db, env)
        sid = self._stream_id(db, stream, start, create=True)
        if stream[2]:
            if len(self._runs) >= _STREAM_CACHE:
                self._runs.clear()
            self._runs[(env.source, env.topic, env.id[:13])] = (sid, stream)
        return sid, stream

    def _forget(self) -> None:
        self._streams.clear()
        self._foreign.clear()
        self._runs.clear()

    def _stream_key(self, db: sqlite3.Connection, env: Envelope) -> Stream:
        epoch = epoch_of(env.id)
        if epoch or not env.seq:
            return (env.source, env.topic, epoch)
        # Not Loom's ids: a publisher run is told by its sequence numbers going back.
        name = (env.source, env.topic)
        known = self._foreign.get(name)
        if known is None:
            found = self._latest_foreign(db, *name)
            known = self._foreign[name] = [found[0], found[1]] if found else ["", 0]
        if known[1] and env.seq <= known[1]:
            known[0] = f"~{int(known[0][1:] or 0) + 1}"
        known[1] = env.seq
        return (env.source, env.topic, known[0])

    def _foreign_epoch(self, db: sqlite3.Connection, source: str, topic: str) -> str:
        """The latest run of a stream whose ids are not Loom's (subscribers say ``""``)."""
        found = self._latest_foreign(db, source, topic)
        return found[0] if found else ""

    @staticmethod
    def _latest_foreign(db: sqlite3.Connection, source: str, topic: str) -> Any:
        return db.execute(
            "SELECT epoch, max_seq FROM streams WHERE source = ? AND topic = ? AND "
            "(epoch = '' OR epoch LIKE '~%') ORDER BY id DESC LIMIT 1",
            (source, topic),
        ).fetchone()

    def _stream_id(
        self, db: sqlite3.Connection, stream: Stream, start: int, *, create: bool
    ) -> int | None:
        sid = self._streams.get(stream)
        if sid is not None:
            return sid
        source, topic, epoch = stream
        row = db.execute(
            "SELECT id FROM streams WHERE source = ? AND topic = ? AND epoch = ?",
            (source, topic, epoch),
        ).fetchone()
        if row is None and not create:
            return None
        if row is None:
            sid = db.execute(
                "INSERT INTO streams (source, topic, epoch, first_pos, last_pos, max_seq) "
                "VALUES (?, ?, ?, ?, ?, 0)",
                (source, topic, epoch, start, start),
            ).lastrowid
        else:
            sid = row[0]
        if len(self._streams) >= _STREAM_CACHE:
            self._streams.clear()
        self._streams[stream] = sid
        return sid

    def _commit(self, db: sqlite3.Connection, commit: Commit, end: int) -> None:
        now = time.time_ns()
        db.execute(
            "INSERT INTO cursors (name, pattern, created_pos, created_ns, committed_ns, closed) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "committed_ns = excluded.committed_ns, closed = excluded.closed",
            (commit.cursor, commit.pattern, end, now, now, int(commit.close)),
        )
        rows = []
        for p in commit.positions:
            epoch = p.epoch or self._foreign_epoch(db, p.source, p.topic)
            sid = self._stream_id(db, (p.source, p.topic, epoch), end, create=False)
            if sid is not None:  # a stream the log does not record has nothing to replay
                rows.append((commit.cursor, sid, p.seq))
        db.executemany(
            "INSERT INTO cursor_streams (cursor, stream, seq) VALUES (?, ?, ?) "
            "ON CONFLICT (cursor, stream) DO UPDATE SET seq = max(seq, excluded.seq)",
            rows,
        )

    def resume(self, cursor: str, pattern: str) -> Resumed:
        """Where cursor ``cursor`` stands and the ranges it has not handled yet: the
        streams it knows, past its position, and those it does not, since it was
        created. A new cursor starts at the end of the log. (The writer thread's.)"""
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT created_pos FROM cursors WHERE name = ?", (cursor,)).fetchone()
            if row is None:
                now = time.time_ns()
                db.execute(
                    "INSERT INTO cursors (name, pattern, created_pos, created_ns, committed_ns, "
                    "closed) VALUES (?, ?, ?, ?, ?, 0)",
                    (cursor, pattern, _next_pos(db) - 1, now, now),
                )
                db.execute("COMMIT")
                return Resumed(True, [], [])
            db.execute("UPDATE cursors SET closed = 0 WHERE name = ?", (cursor,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return self._resume_ranges(db, cursor, compile_pattern(pattern), row[0])

    def _resume_ranges(
        self, db: sqlite3.Connection, cursor: str, pattern: Pattern, created_pos: int
    ) -> Resumed:
        known = {
            # a subscriber names the runs of a stream whose ids are not Loom's ""
            sid: Position(source, topic, "" if epoch.startswith("~") else epoch, seq)
            for sid, source, topic, epoch, seq in db.execute(
                "SELECT s.id, s.source, s.topic, s.epoch, c.seq FROM cursor_streams c "
                "JOIN streams s ON s.id = c.stream WHERE c.cursor = ?",
                (cursor,),
            )
        }
        low, high = _prefix_bounds(pattern.prefix)
        ranges = []
        for sid, source, topic, epoch, max_seq in db.execute(
            "SELECT id, source, topic, epoch, max_seq FROM streams "
            "WHERE last_pos > ? AND topic >= ? AND topic < ?",
            (created_pos, low, high),
        ):
            if not pattern.matches(topic):
                continue
            at = known.get(sid)
            if at is None:
                ranges.append(Range(source, topic, epoch, 0, 0, created_pos))
            elif max_seq > at.seq:
                ranges.append(Range(source, topic, epoch, at.seq))
        return Resumed(False, list(known.values()), ranges)

    def purge(self, now: float | None = None) -> int:
        """Drop events past the retention time and the size limit, streams left without
        events, and cursors unused for as long; returns how many events went."""
        db = self._db()
        clock = time.time() if now is None else now
        cutoff = int((clock - self.retention_hours * 3600) * 1e9)
        deleted = 0
        while True:  # in chunks: writing goes on between them
            count = db.execute(
                "DELETE FROM events WHERE pos IN (SELECT pos FROM events WHERE ts < ? "
                "ORDER BY ts LIMIT ?)",
                (cutoff, _PURGE_CHUNK),
            ).rowcount
            deleted += count
            if count < _PURGE_CHUNK:
                break
        deleted += self._purge_size(db)
        db.execute(
            "DELETE FROM streams WHERE last_pos < (SELECT coalesce(min(pos), ?) FROM events)",
            (_next_pos(db),),
        )
        db.execute("DELETE FROM cursors WHERE committed_ns < ?", (cutoff,))
        db.execute(
            "DELETE FROM cursor_streams WHERE stream NOT IN (SELECT id FROM streams) "
            "OR cursor NOT IN (SELECT name FROM cursors)"
        )
        db.execute("PRAGMA incremental_vacuum")
        self._forget()
        return deleted

    def _purge_size(self, db: sqlite3.Connection) -> int:
        used = _used_bytes(db)
        if used <= self.max_bytes:
            return 0
        first, last = db.execute("SELECT min(pos), max(pos) FROM events").fetchone()
        if first is None:
            return 0
        per_event = used / max(1, last - first + 1)
        # a tenth more than the excess, so the next event does not trigger it again
        drop = int((used - self.max_bytes * 0.9) / per_event) + 1
        return db.execute("DELETE FROM events WHERE pos < ?", (first + drop,)).rowcount

    # -- reading (any thread) ----------------------------------------------------------

    def fetch(
        self, ranges: Iterable[Range], limit: int = 5000, max_bytes: int = 4 * 1024 * 1024
    ) -> Fetched:
        """Logged events of ``ranges``, each stream's in sequence order, merged in log
        order; at most ``limit`` of them and about ``max_bytes`` (``more`` says the
        answer was cut short)."""
        db = self._db()
        per_stream: list[list[Record]] = []
        more = False
        for r in ranges:
            sid = self._find_stream(db, r)
            if sid is None:
                continue
            rows = db.execute(
                "SELECT pos, header, payload FROM events WHERE stream = ? AND seq > 0 AND "
                "seq > ? AND (? = 0 OR seq < ?) AND pos > ? ORDER BY seq LIMIT ?",
                (sid, r.after, r.before, r.before, r.after_pos, limit + 1),
            ).fetchall()
            more = more or len(rows) > limit
            # the epoch as asked, so the asker can go on from each range's last event
            per_stream.append([Record(pos, r.topic, r.epoch, h, p) for pos, h, p in rows[:limit]])
        events: list[Record] = []
        size = 0
        for record in heapq.merge(*per_stream, key=lambda record: record.pos):
            if len(events) >= limit or (events and size > max_bytes):
                return Fetched(events, True)
            events.append(record)
            size += len(record.header) + len(record.payload) + len(record.topic) + 16
        return Fetched(events, more)

    def _find_stream(self, db: sqlite3.Connection, r: Range) -> int | None:
        epoch = r.epoch or self._foreign_epoch(db, r.source, r.topic)
        row = db.execute(
            "SELECT id FROM streams WHERE source = ? AND topic = ? AND epoch = ?",
            (r.source, r.topic, epoch),
        ).fetchone()
        return row[0] if row else None

    def query(
        self,
        since: When = None,
        until: When = None,
        topics: Sequence[str] | None = None,
        *,
        after_pos: int = 0,
        limit: int = 1000,
    ) -> list[LoggedEvent]:
        """Events published between ``since`` and ``until`` (epoch seconds, datetimes, a
        timedelta back from now, or None for no bound) on topics matching ``topics``
        (patterns; None: all), in log order, after log position ``after_pos``; at most
        ``limit`` (page on with ``after_pos`` = the last one's ``pos``).

        Raises:
            LoomError: a bad time or limit; TopicError: a bad pattern.
        """
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise LoomError(f"limit={limit!r}: use a positive int")
        patterns = [compile_pattern(t) for t in topics] if topics else None
        low_ns, high_ns = when_ns(since, "since", 0), when_ns(until, "until", 2**63 - 1)
        db = self._db()
        low, high = _pos_bounds(db, low_ns, high_ns)
        found: list[LoggedEvent] = []
        cursor = max(after_pos, low - 1)
        while len(found) < limit and cursor < high:
            rows = db.execute(
                "SELECT e.pos, s.topic, e.ts, e.header, e.payload FROM events e JOIN streams s "
                "ON s.id = e.stream WHERE e.pos > ? AND e.pos <= ? ORDER BY e.pos LIMIT ?",
                (cursor, high, max(limit, 500)),
            ).fetchall()
            if not rows:
                break
            for pos, topic, ts, header, payload in rows:
                cursor = pos
                if not low_ns <= ts <= high_ns:
                    continue
                if patterns is not None and not any(p.matches(topic) for p in patterns):
                    continue
                item = _logged(pos, topic, header, payload)
                if item is not None:
                    found.append(item)
                    if len(found) >= limit:
                        break
        return found

    def count(self, since: When = None, until: When = None) -> int:
        """About how many events were published between ``since`` and ``until``."""
        db = self._db()
        low, high = _pos_bounds(db, when_ns(since, "since", 0), when_ns(until, "until", 2**63 - 1))
        return max(0, high - low + 1) if high else 0

    def cursors(self) -> list[dict[str, Any]]:
        """Every cursor: name, pattern, streams it knows, last commit, closed cleanly."""
        db = self._db()
        return [
            {"name": n, "pattern": p, "streams": s, "committed_ns": c, "closed": bool(x)}
            for n, p, c, x, s in db.execute(
                "SELECT name, pattern, committed_ns, closed, (SELECT count(*) FROM "
                "cursor_streams WHERE cursor = name) FROM cursors ORDER BY name"
            )
        ]

    def statistics(self) -> EventLogStatistics:
        db = self._db()
        first, last = db.execute("SELECT min(pos), max(pos) FROM events").fetchone()
        return EventLogStatistics(
            events=(last - first + 1) if first is not None else 0,
            streams=db.execute("SELECT count(*) FROM streams").fetchone()[0],
            cursors=db.execute("SELECT count(*) FROM cursors").fetchone()[0],
            bytes=_used_bytes(db),
            first_pos=first or 0,
            last_pos=last or 0,
        )


def _next_pos(db: sqlite3.Connection) -> int:
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    return (row[0] if row else 0) + 1


def _used_bytes(db: sqlite3.Connection) -> int:
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    free = db.execute("PRAGMA freelist_count").fetchone()[0]
    return (pages - free) * db.execute("PRAGMA page_size").fetchone()[0]


def _pos_bounds(db: sqlite3.Connection, low_ns: int, high_ns: int) -> tuple[int, int]:
    """The smallest log position of an event at or after ``low_ns`` and the largest of
    one at or before ``high_ns`` ((1, 0) when there is none). Times and positions do not
    always go together: an event its publisher sent again reaches the log after newer
    ones, so the bounds are the extremes over the time range, not its two ends."""
    low = db.execute("SELECT min(pos) FROM events WHERE ts >= ?", (low_ns,)).fetchone()[0]
    high = db.execute("SELECT max(pos) FROM events WHERE ts <= ?", (high_ns,)).fetchone()[0]
    if low is None or high is None:
        return 1, 0
    return low, high


def _prefix_bounds(prefix: str) -> tuple[str, str]:
    """Topics starting with ``prefix`` sort in ``[low, high)`` (SQLite compares bytes)."""
    if not prefix:
        return "", "\U0010ffff"
    return prefix, prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _ack_ranges(acks: dict[Stream, list[int]]) -> list[tuple[str, str, str, int, int]]:
    ranges = []
    for (source, topic, epoch), seqs in acks.items():
        seqs.sort()
        first = last = seqs[0]
        for seq in seqs[1:]:
            if seq > last + 1:
                ranges.append((source, topic, epoch, first, last))
                first = seq
            last = seq
        ranges.append((source, topic, epoch, first, last))
    return ranges


def _logged(pos: int, topic: str, header: bytes, payload: bytes) -> LoggedEvent | None:
    try:
        return LoggedEvent(pos, envelope_of(Record(pos, topic, "", header, payload)))
    except ProtocolError:  # recorded from the wire, so it decoded once: a corrupt row
        return None


def when_ns(value: Any, what: str, default: int) -> int:
    """Nanoseconds since the epoch of a :data:`When` (``default`` for None).

    Raises:
        LoomError: not epoch seconds, a datetime or a timedelta (``what`` names it).
    """
    if value is None:
        return default
    if isinstance(value, timedelta):
        return int((time.time() - value.total_seconds()) * 1e9)
    if isinstance(value, datetime):
        return int(value.timestamp() * 1e9)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value * 1e9)
    raise LoomError(f"{what}={value!r}: use epoch seconds, a datetime or a timedelta")
