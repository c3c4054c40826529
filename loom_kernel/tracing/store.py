"""The span store: finished spans in SQLite, for the studio and ``loom traces``.

The process that runs the project's bus collects the spans published on
``loom.trace.spans.*`` into ``[tracing] store_path``
(:class:`~loom_kernel.tracing.collector.SpanCollector`); anything can read the file
afterwards, even when no agent runs (:class:`SpanStore`).

>>> store = SpanStore(".loom/traces.db")                     # doctest: +SKIP
>>> for summary in store.traces(limit=5): print(summary.root, summary.spans)
>>> tree = store.trace(store.last_trace_id())
>>> slow = store.query(name="chat", min_duration_ms=500, status="error")

The store holds its limits exactly: before a batch goes in, the oldest spans make room
for it under ``max_spans`` (a count kept by triggers, so reading it costs nothing), and
SQLite's ``max_page_count`` stops the file at ``max_mb`` (an insert that would grow it
past makes the oldest go first, then goes in). The WAL is checkpointed by SQLite every
1,000 pages and truncated to :data:`WAL_LIMIT` after; ``purge`` drops what is past the
retention time in chunks and truncates the WAL.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from ..config import LoomConfig
from ..errors import LoomError
from ..protocol.spans import Span, SpanEvent
from .span_filters import (
    TraceFilters,
    Where,
    attribute_path,
    check_age,
    check_count,
    check_limit,
    check_status,
    check_text,
    duration_ns,
    epoch_ns,
)

__all__ = ["WAL_LIMIT", "SpanStore", "StoreStatistics", "TraceSummary", "open_span_store"]

log = logging.getLogger("loom.tracing.store")
_SCHEMA_VERSION = 2
_SCHEMA = (
    # version 1: the spans and their indexes
    """CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT, name TEXT NOT NULL,
    kind TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL, status TEXT NOT NULL, status_message TEXT,
    service TEXT, agent TEXT, attributes TEXT NOT NULL, events TEXT NOT NULL,
    links TEXT NOT NULL, sampled INTEGER NOT NULL,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ns)",
    "CREATE INDEX IF NOT EXISTS spans_agent ON spans (agent, start_ns)",
    "CREATE INDEX IF NOT EXISTS spans_name ON spans (name, start_ns)",
    # version 2: the span count, kept by triggers (COUNT(*) reads every row)
    "CREATE TABLE IF NOT EXISTS span_count (n INTEGER NOT NULL)",
    "INSERT INTO span_count SELECT COUNT(*) FROM spans WHERE NOT EXISTS (SELECT 1 FROM span_count)",
    "CREATE TRIGGER IF NOT EXISTS spans_added AFTER INSERT ON spans "
    "BEGIN UPDATE span_count SET n = n + 1; END",
    "CREATE TRIGGER IF NOT EXISTS spans_removed AFTER DELETE ON spans "
    "BEGIN UPDATE span_count SET n = n - 1; END",
)
#: Bytes the WAL is truncated to after a checkpoint.
WAL_LIMIT = 8 * 2**20
_CHUNK = 5_000  # spans deleted per statement when purging
_FULL_RETRIES = 20  # rounds of "drop the oldest, insert again" when the file is full
_ROOM_MARGIN = 1.2  # room made for a batch, in pages a span takes on average
_PAGES = ("page_count", "freelist_count")
_INSERT = (
    "INSERT OR IGNORE INTO spans (trace_id, span_id, parent_id, name, kind, start_ns, end_ns, "
    "duration_ns, status, status_message, service, agent, attributes, events, links, sampled) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_DROP_OLDEST = (
    "DELETE FROM spans WHERE (trace_id, span_id) IN "
    "(SELECT trace_id, span_id FROM spans ORDER BY start_ns LIMIT ?)"
)
_DROP_BEFORE = (
    "DELETE FROM spans WHERE (trace_id, span_id) IN "
    "(SELECT trace_id, span_id FROM spans WHERE start_ns < ? ORDER BY start_ns LIMIT ?)"
)
_COLUMNS = (
    "trace_id, span_id, parent_id, name, kind, start_ns, end_ns, status, status_message, "
    "service, agent, attributes, events, links, sampled"
)
_events = msgspec.json.Decoder(list[SpanEvent])
Since = float | datetime | timedelta | None


@dataclass(frozen=True)
class StoreStatistics:
    """The store's size against its limits, and what the limits removed."""

    spans: int
    max_spans: int
    file_bytes: int
    wal_bytes: int
    max_bytes: int | None
    dropped: int  # oldest spans removed to stay under max_spans / max_mb (by this object)
    purged: int  # spans removed past the retention time (by this object)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TraceSummary:
    """One trace, as ``loom traces`` lists it."""

    trace_id: str
    root: str
    spans: int
    agents: tuple[str, ...]
    start_ns: int
    duration_ms: float
    errors: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "agents": list(self.agents)}


class SpanStore:
    """Spans in one SQLite file (WAL mode; safe with several processes).

    Args:
        path: the file (created with its folder on first use).
        retention_hours: spans older than this are purged by :meth:`purge`.
        max_spans: the store keeps at most this many spans (oldest go first).
        max_mb: the database file stays within this many MiB (None: no size limit;
            oldest go first). The WAL beside it adds at most a few MiB.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        retention_hours: float = 24.0,
        max_spans: int = 1_000_000,
        max_mb: float | None = None,
    ):
        self.path = Path(path)
        self.retention_hours = retention_hours
        self.max_spans = max_spans
        self.max_bytes = int(max_mb * 2**20) if max_mb is not None else None
        self.dropped = 0
        self.purged = 0
        self._max_pages: int | None = None
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
                if db.execute("PRAGMA user_version").fetchone()[0] < _SCHEMA_VERSION:
                    _migrate(db)
                if self.max_bytes is not None:
                    page = db.execute("PRAGMA page_size").fetchone()[0]
                    self._max_pages = max(16, self.max_bytes // page)
                    db.execute(f"PRAGMA max_page_count = {self._max_pages}")
            except (sqlite3.Error, OSError) as exc:
                raise LoomError(
                    f"cannot open the span store {self.path}: {exc} (set [tracing] store_path "
                    "to a writable file)"
                ) from None
            self._local.db = db
        return db

    def close(self) -> None:
        """Close this thread's connection to the store's file."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- writing ---------------------------------------------------------------------

    def add(self, spans: Iterable[Span]) -> int:
        """Store spans (a span already stored is ignored); returns how many were new.

        The oldest spans go first to keep the store within ``max_spans`` and ``max_mb``.
        """
        rows = [
            (
                s.trace_id,
                s.span_id,
                s.parent_id,
                s.name,
                s.kind,
                s.start_ns,
                s.end_ns,
                max(0, s.end_ns - s.start_ns),
                s.status,
                s.status_message,
                s.service,
                s.agent,
                json.dumps(s.attributes, default=str),
                msgspec.json.encode(s.events).decode(),
                json.dumps(s.links),
                int(s.sampled),
            )
            for s in spans
        ]
        if not rows:
            return 0
        if len(rows) > self.max_spans:  # a batch bigger than the store: its newest spans
            self.dropped += len(rows) - self.max_spans
            rows = sorted(rows, key=lambda row: row[5])[-self.max_spans :]
        db = self._db()
        for _ in range(_FULL_RETRIES):
            stored = self._add_rows(db, rows)
            if stored is not None:
                return stored
            # the file is full, and SQLite rolled the whole transaction back (the oldest
            # dropped in it came back): make room in a transaction of its own, then retry
            self._make_room(db, max(len(rows), _stored(db) // 200))
        raise LoomError(
            f"the span store {self.path} is full ([tracing] store_max_mb) and dropping its "
            "oldest spans made no room: raise store_max_mb, or delete the file"
        )

    def _add_rows(self, db: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> int | None:
        """One transaction: drop the oldest spans to make room, insert ``rows``. Returns how
        many were new, or None when the file was full (nothing changed)."""
        db.execute("BEGIN IMMEDIATE")
        try:
            before = _stored(db)
            dropped = self._drop_oldest(db, self._excess(db, before, len(rows)))
            try:
                db.executemany(_INSERT, rows)  # a span already stored is ignored
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode != sqlite3.SQLITE_FULL:
                    raise
                if db.in_transaction:
                    db.execute("ROLLBACK")
                return None
            stored = _stored(db) - before + dropped
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.dropped += dropped
        return stored

    def _make_room(self, db: sqlite3.Connection, count: int) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            dropped = self._drop_oldest(db, count)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        self.dropped += dropped

    def _excess(self, db: sqlite3.Connection, stored: int, incoming: int) -> int:
        """How many of the oldest spans to drop so that ``incoming`` more fit: under
        ``max_spans``, and (an estimate from the pages a span takes now) under ``max_mb``,
        so that the file rarely has to say it is full."""
        excess = stored + incoming - self.max_spans
        limit = self._max_pages
        if limit is None or stored == 0:
            return excess
        pages, free = (db.execute(f"PRAGMA {p}").fetchone()[0] for p in _PAGES)
        per_span = pages / stored
        room = free + limit - pages
        need = incoming * per_span * _ROOM_MARGIN
        if room < need:
            excess = max(excess, math.ceil((need - room) / per_span))
        return excess

    def _drop_oldest(self, db: sqlite3.Connection, count: int) -> int:
        dropped = 0
        while count > 0:
            done = db.execute(_DROP_OLDEST, (min(count, _CHUNK),)).rowcount
            if done <= 0:
                break
            dropped += done
            count -= done
        return dropped

    def purge(self, now: float | None = None) -> int:
        """Drop spans past the retention time (and beyond ``max_spans``, had the limit been
        lowered), in chunks, then truncate the WAL; returns how many went."""
        db = self._db()
        clock = now if now is not None else time.time()
        cutoff = int((clock - self.retention_hours * 3600) * 1e9)
        purged = dropped = 0
        while True:
            db.execute("BEGIN IMMEDIATE")
            try:
                done = db.execute(_DROP_BEFORE, (cutoff, _CHUNK)).rowcount
                dropped += self._drop_oldest(db, _stored(db) - self.max_spans)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            purged += done
            if done < _CHUNK:
                break
        self.purged += purged
        self.dropped += dropped
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # busy readers: a later one succeeds
        return purged + dropped

    def statistics(self) -> StoreStatistics:
        """The store's size and limits now."""
        db = self._db()
        pages, size = (db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "page_size"))
        wal = self.path.with_name(self.path.name + "-wal")
        return StoreStatistics(
            spans=_stored(db),
            max_spans=self.max_spans,
            file_bytes=pages * size,
            wal_bytes=wal.stat().st_size if wal.exists() else 0,
            max_bytes=self.max_bytes,
            dropped=self.dropped,
            purged=self.purged,
        )

    # -- reading ---------------------------------------------------------------------

    def query(
        self,
        *,
        trace_id: str | None = None,
        agent: str | None = None,
        name: str | None = None,
        status: str | None = None,
        min_duration_ms: float | None = None,
        since: Since = None,
        until: Since = None,
        attribute: tuple[str, Any] | None = None,
        service: str | None = None,
        agents: Collection[str] | None = None,
        limit: int = 100,
    ) -> list[Span]:
        """Spans matching every given filter, newest first (``agents``: of one of these).

        ``name`` matches a part of the span name (``"chat"`` finds ``chat deepseek/...``);
        ``attribute`` is ``(key, value)``; ``since``/``until`` take epoch seconds,
        datetimes, or a timedelta back from now.

        Raises:
            LoomError: a filter of the wrong type or value (the message says which).
        """
        where = Where()
        for column, value in (("trace_id", trace_id), ("agent", agent), ("service", service)):
            if value is not None:
                where.add(f"{column} = ?", check_text(value, column))
        if status is not None:
            where.add("status = ?", check_status(status))
        if agents is not None:
            names = [check_text(agent, "agents") for agent in agents]
            where.add(f"agent IN ({', '.join('?' * len(names)) or 'NULL'})", *names)
        if name is not None:
            where.add("instr(name, ?) > 0", check_text(name, "name"))
        if min_duration_ms is not None:
            where.add("duration_ns >= ?", duration_ns(min_duration_ms))
        if since is not None:
            where.add("start_ns >= ?", epoch_ns(since, "since"))
        if until is not None:
            where.add("start_ns <= ?", epoch_ns(until, "until"))
        if attribute is not None:
            where.add("json_extract(attributes, ?) = ?", *attribute_path(attribute))
        check_limit(limit)
        sql = f"SELECT {_COLUMNS} FROM spans{where.sql} ORDER BY start_ns DESC LIMIT ?"
        return [_span(row) for row in self._db().execute(sql, [*where.params, limit])]

    def trace(self, trace_id: str) -> list[Span]:
        """Every stored span of one trace, in start order."""
        rows = self._db().execute(
            f"SELECT {_COLUMNS} FROM spans WHERE trace_id = ? ORDER BY start_ns",
            (check_text(trace_id, "trace_id"),),
        )
        return [_span(row) for row in rows]

    def traces(
        self,
        *,
        limit: int = 20,
        since: Since = None,
        agent: str | None = None,
        errors_only: bool = False,
        name: str | None = None,
        min_spans: int | None = None,
        settled: float | None = None,
        agents: Collection[str] | None = None,
    ) -> list[TraceSummary]:
        """The most recent traces, newest first.

        Args:
            since: only whole traces that started in the window.
            agent: only traces this agent took part in.
            agents: only traces one of these agents took part in (a tenant's view).
            errors_only: only traces with an error span.
            name: only traces with a span whose name contains this (``trade.order``).
            min_spans: only traces of at least this many spans.
            settled: only traces with no span ended in the last ``settled`` seconds
                (complete: every process's batches arrived).

        Raises:
            LoomError: a filter of the wrong type or value.
        """
        check_limit(limit)
        filters = TraceFilters()
        if not isinstance(errors_only, bool):
            raise LoomError(f"errors_only={errors_only!r}: use True or False")
        _by_agents(filters, agent, agents)
        if name is not None:
            filters.where(
                "trace_id IN (SELECT trace_id FROM spans WHERE instr(name, ?) > 0)",
                check_text(name, "name"),
            )
        if since is not None:
            start = epoch_ns(since, "since")
            filters.where("trace_id IN (SELECT trace_id FROM spans WHERE start_ns >= ?)", start)
            filters.having("MIN(start_ns) >= ?", start)
        if errors_only:
            filters.having("SUM(status = 'error') > 0")
        if min_spans is not None:
            filters.having("COUNT(*) >= ?", check_count(min_spans, "min_spans"))
        if settled is not None:
            filters.having(
                "MAX(end_ns) <= ?", epoch_ns(timedelta(seconds=check_age(settled)), "settled")
            )
        sql = (
            "SELECT trace_id, MIN(start_ns), MAX(end_ns), COUNT(*), "
            "SUM(status = 'error'), GROUP_CONCAT(DISTINCT agent) FROM spans"
            f"{filters.sql} ORDER BY MIN(start_ns) DESC LIMIT ?"
        )
        rows = self._db().execute(sql, [*filters.params, limit]).fetchall()
        return [self._summary(*row) for row in rows]

    def _summary(
        self, trace_id: str, start: int, end: int, count: int, errors: int, agents: str | None
    ) -> TraceSummary:
        root = (
            self._db()
            .execute(
                "SELECT name FROM spans WHERE trace_id = ? ORDER BY parent_id IS NOT NULL, "
                "start_ns LIMIT 1",
                (trace_id,),
            )
            .fetchone()
        )
        return TraceSummary(
            trace_id=trace_id,
            root=root[0] if root else "?",
            spans=count,
            agents=tuple(sorted(set((agents or "").split(",")) - {""})),
            start_ns=start,
            duration_ms=round((end - start) / 1e6, 3),
            errors=errors or 0,
        )

    def resolve(self, prefix: str) -> str:
        """The full id of the one stored trace starting with ``prefix`` (as git does).

        Raises:
            LoomError: no such trace, or the prefix is ambiguous.
        """
        text = check_text(prefix, "trace id").lower()
        rows = (
            self._db()
            .execute(
                "SELECT DISTINCT trace_id FROM spans WHERE trace_id >= ? AND trace_id < ? LIMIT 2",
                (text, text + "g"),
            )
            .fetchall()
        )
        if not rows:
            raise LoomError(
                f"no trace {prefix!r} in {self.path}: `loom traces` lists what is stored"
            )
        if len(rows) > 1:
            raise LoomError(f"trace id prefix {prefix!r} is ambiguous: give more digits")
        return rows[0][0]

    def last_trace_id(self, **filters: Any) -> str | None:
        """The newest trace's id (of those matching ``filters``, as for :meth:`traces`)."""
        if not filters:
            row = (
                self._db()
                .execute("SELECT trace_id FROM spans ORDER BY start_ns DESC LIMIT 1")
                .fetchone()
            )
            return row[0] if row else None
        found = self.traces(limit=1, **filters)
        return found[0].trace_id if found else None

    def count(self) -> int:
        """How many spans the store holds (kept by triggers: no scan)."""
        return _stored(self._db())


def _stored(db: sqlite3.Connection) -> int:
    return db.execute("SELECT n FROM span_count").fetchone()[0]


def _migrate(db: sqlite3.Connection) -> None:
    """Bring the schema to the current version, in one transaction (two processes may
    open an old file at once)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        if db.execute("PRAGMA user_version").fetchone()[0] < _SCHEMA_VERSION:
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def _span(row: tuple[Any, ...]) -> Span:
    """A stored row (in ``_COLUMNS`` order) back into a :class:`Span`."""
    service, agent, attributes, events, links, sampled = row[9:]
    return Span(
        *row[:9],
        service or "",
        agent,
        json.loads(attributes),
        _events.decode(events),
        [tuple(link) for link in json.loads(links)],
        bool(sampled),
    )


def _by_agents(filters: TraceFilters, agent: str | None, agents: Collection[str] | None) -> None:
    """Traces ``agent`` took part in, and traces one of ``agents`` took part in."""
    if agent is not None:
        filters.where(
            "trace_id IN (SELECT trace_id FROM spans WHERE agent = ?)", check_text(agent, "agent")
        )
    if agents is not None:
        names = [check_text(name, "agents") for name in agents]
        marks = ", ".join("?" * len(names)) or "NULL"
        filters.where(f"trace_id IN (SELECT trace_id FROM spans WHERE agent IN ({marks}))", *names)


def open_span_store(config: LoomConfig) -> SpanStore:
    """The project's span store as ``[tracing]`` sets it: its path, age and size bounds."""
    settings = config.tracing
    return SpanStore(
        config.project_path(settings.store_path),
        retention_hours=settings.retention_hours,
        max_spans=settings.store_max_spans,
        max_mb=settings.store_max_mb,
    )
