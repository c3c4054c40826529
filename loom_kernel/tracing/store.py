"""The span store: finished spans in SQLite, for the studio and ``loom traces``.

The process that runs the project's bus collects the spans published on
``loom.trace.spans.*`` into ``[tracing] store_path``
(:class:`~loom_kernel.tracing.collector.SpanCollector`); anything can read the file
afterwards, even when no agent runs (:class:`SpanStore`).

>>> store = SpanStore(".loom/traces.db")                     # doctest: +SKIP
>>> for summary in store.traces(limit=5): print(summary.root, summary.spans)
>>> tree = store.trace(store.last_trace_id())
>>> slow = store.query(name="chat", min_duration_ms=500, status="error")
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from ..errors import LoomError
from ..protocol.spans import Span, SpanEvent

__all__ = ["SpanStore", "TraceSummary"]

log = logging.getLogger("loom.tracing.store")
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT, name TEXT NOT NULL,
    kind TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL, status TEXT NOT NULL, status_message TEXT,
    service TEXT, agent TEXT, attributes TEXT NOT NULL, events TEXT NOT NULL,
    links TEXT NOT NULL, sampled INTEGER NOT NULL,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spans_start ON spans (start_ns);
CREATE INDEX IF NOT EXISTS spans_agent ON spans (agent, start_ns);
CREATE INDEX IF NOT EXISTS spans_name ON spans (name, start_ns);
"""
_COLUMNS = (
    "trace_id, span_id, parent_id, name, kind, start_ns, end_ns, status, status_message, "
    "service, agent, attributes, events, links, sampled"
)
_events = msgspec.json.Decoder(list[SpanEvent])
Since = float | datetime | timedelta | None


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
    """

    def __init__(
        self, path: str | Path, *, retention_hours: float = 24.0, max_spans: int = 1_000_000
    ):
        self.path = Path(path)
        self.retention_hours = retention_hours
        self.max_spans = max_spans
        self._local = threading.local()

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                if db.execute("PRAGMA user_version").fetchone()[0] < _SCHEMA_VERSION:
                    db.executescript(_SCHEMA)
                    db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            except (sqlite3.Error, OSError) as exc:
                raise LoomError(
                    f"cannot open the span store {self.path}: {exc} (set [tracing] store_path "
                    "to a writable file)"
                ) from None
            self._local.db = db
        return db

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- writing ---------------------------------------------------------------------

    def add(self, spans: Iterable[Span]) -> int:
        """Store spans (a span already stored is ignored); returns how many were new."""
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
        db = self._db()
        before = db.total_changes
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR IGNORE INTO spans (trace_id, span_id, parent_id, name, kind, start_ns, "
                "end_ns, duration_ns, status, status_message, service, agent, attributes, events, "
                "links, sampled) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return db.total_changes - before

    def purge(self, now: float | None = None) -> int:
        """Drop spans past the retention time and beyond ``max_spans``; returns how many."""
        db = self._db()
        clock = now if now is not None else time.time()
        cutoff = int((clock - self.retention_hours * 3600) * 1e9)
        before = db.total_changes
        db.execute("DELETE FROM spans WHERE start_ns < ?", (cutoff,))
        count = db.execute("SELECT COUNT(*) FROM spans").fetchone()[0]
        if count > self.max_spans:
            db.execute(
                "DELETE FROM spans WHERE (trace_id, span_id) IN (SELECT trace_id, span_id "
                "FROM spans ORDER BY start_ns LIMIT ?)",
                (count - self.max_spans,),
            )
        return db.total_changes - before

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
        limit: int = 100,
    ) -> list[Span]:
        """Spans matching every given filter, newest first.

        ``name`` matches a part of the span name (``"chat"`` finds ``chat deepseek/...``);
        ``attribute`` is ``(key, value)``; ``since``/``until`` take epoch seconds,
        datetimes, or a timedelta back from now.

        Raises:
            LoomError: a filter of the wrong type or value (the message says which).
        """
        where = _Where()
        for column, value in (("trace_id", trace_id), ("agent", agent), ("service", service)):
            if value is not None:
                where.add(f"{column} = ?", _text(value, column))
        if status is not None:
            where.add("status = ?", _status(status))
        if name is not None:
            where.add("instr(name, ?) > 0", _text(name, "name"))
        if min_duration_ms is not None:
            where.add("duration_ns >= ?", _duration_ns(min_duration_ms))
        if since is not None:
            where.add("start_ns >= ?", _ns(since, "since"))
        if until is not None:
            where.add("start_ns <= ?", _ns(until, "until"))
        if attribute is not None:
            where.add("json_extract(attributes, ?) = ?", *_attribute(attribute))
        _check_limit(limit)
        sql = f"SELECT {_COLUMNS} FROM spans{where.sql} ORDER BY start_ns DESC LIMIT ?"
        return [_span(row) for row in self._db().execute(sql, [*where.params, limit])]

    def trace(self, trace_id: str) -> list[Span]:
        """Every stored span of one trace, in start order."""
        rows = self._db().execute(
            f"SELECT {_COLUMNS} FROM spans WHERE trace_id = ? ORDER BY start_ns",
            (_text(trace_id, "trace_id"),),
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
    ) -> list[TraceSummary]:
        """The most recent traces, newest first.

        Args:
            since: only whole traces that started in the window.
            agent: only traces this agent took part in.
            errors_only: only traces with an error span.
            name: only traces with a span whose name contains this (``trade.order``).
            min_spans: only traces of at least this many spans.
            settled: only traces with no span ended in the last ``settled`` seconds
                (complete: every process's batches arrived).

        Raises:
            LoomError: a filter of the wrong type or value.
        """
        _check_limit(limit)
        filters = _TraceFilters()
        if not isinstance(errors_only, bool):
            raise LoomError(f"errors_only={errors_only!r}: use True or False")
        if agent is not None:
            filters.where(
                "trace_id IN (SELECT trace_id FROM spans WHERE agent = ?)", _text(agent, "agent")
            )
        if name is not None:
            filters.where(
                "trace_id IN (SELECT trace_id FROM spans WHERE instr(name, ?) > 0)",
                _text(name, "name"),
            )
        if since is not None:
            start = _ns(since, "since")
            filters.where("trace_id IN (SELECT trace_id FROM spans WHERE start_ns >= ?)", start)
            filters.having("MIN(start_ns) >= ?", start)
        if errors_only:
            filters.having("SUM(status = 'error') > 0")
        if min_spans is not None:
            filters.having("COUNT(*) >= ?", _count(min_spans, "min_spans"))
        if settled is not None:
            filters.having("MAX(end_ns) <= ?", _ns(timedelta(seconds=_age(settled)), "settled"))
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
        text = _text(prefix, "trace id").lower()
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
        return self._db().execute("SELECT COUNT(*) FROM spans").fetchone()[0]


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


class _TraceFilters:
    """The WHERE (on spans) and HAVING (on whole traces) clauses of a traces query."""

    def __init__(self) -> None:
        self._where: list[str] = []
        self._having: list[str] = []
        self._where_params: list[Any] = []
        self._having_params: list[Any] = []

    def where(self, condition: str, *params: Any) -> None:
        self._where.append(condition)
        self._where_params.extend(params)

    def having(self, condition: str, *params: Any) -> None:
        self._having.append(condition)
        self._having_params.extend(params)

    @property
    def sql(self) -> str:
        where = " WHERE " + " AND ".join(self._where) if self._where else ""
        having = " HAVING " + " AND ".join(self._having) if self._having else ""
        return f"{where} GROUP BY trace_id{having}"

    @property
    def params(self) -> list[Any]:
        return [*self._where_params, *self._having_params]


def _count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise LoomError(f"{what}={value!r}: use an int >= 1")
    return value


def _age(value: Any) -> float:
    if not _number(value) or value < 0:
        raise LoomError(f"settled={value!r}: use a number of seconds >= 0")
    return float(value)


class _Where:
    """The WHERE clause of a query, built one condition at a time."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.params: list[Any] = []

    def add(self, condition: str, *params: Any) -> None:
        self.conditions.append(condition)
        self.params.extend(params)

    @property
    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.conditions) if self.conditions else ""


def _status(status: Any) -> str:
    if status not in ("ok", "error", "unset"):
        raise LoomError(f"status={status!r}: use 'ok', 'error' or 'unset'")
    return str(status)


def _duration_ns(min_duration_ms: Any) -> int:
    if not _number(min_duration_ms) or min_duration_ms < 0:
        raise LoomError(f"min_duration_ms={min_duration_ms!r}: use a number >= 0")
    return int(min_duration_ms * 1e6)


def _attribute(attribute: Any) -> tuple[str, Any]:
    if not (isinstance(attribute, tuple) and len(attribute) == 2):
        raise LoomError(f"attribute={attribute!r}: use a (key, value) pair")
    key, value = attribute
    if not isinstance(key, str) or not key or '"' in key:
        raise LoomError(f"attribute={attribute!r}: use a non-empty str key without '\"'")
    if not isinstance(value, str | int | float | bool):
        raise LoomError(f"attribute={attribute!r}: compare with a str, int, float or bool value")
    return f'$."{key}"', value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_limit(limit: Any) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100_000:
        raise LoomError(f"limit={limit!r}: use an int from 1 to 100000")


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise LoomError(f"{what}={value!r}: use a non-empty str")
    return value


def _ns(value: Any, what: str) -> int:
    if isinstance(value, timedelta):
        return int((time.time() - value.total_seconds()) * 1e9)
    if isinstance(value, datetime):
        return int(value.timestamp() * 1e9)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value * 1e9)
    raise LoomError(f"{what}={value!r}: use epoch seconds, a datetime or a timedelta")
