"""What the History view reads: the event log's extent, its rate over time, the events and
the traces of a time window, and the ``loom replay`` command for that window.

Read-only, from the files alone (any process may read them while the bus's process
writes): ``sqlite3`` opened with ``mode=ro``, so reading never creates a file, a table
or a lock file's worth of state. The event log's schema is the kernel's
(``loom_kernel/durability/store.py``): ``events(pos, ts, stream, seq, header, payload)``
indexed by ``ts``, and ``streams(id, source, topic, epoch, ...)``. Counts and rates are
aggregates SQLite computes over the ``ts`` index (no event is decoded for them); a
window's events are read newest first through the same index, at most ``limit``. The
tables' frames and the times as the page shows them (the local wall clock) are here too.

>>> with open_read_only(".loom/events.db") as db:          # doctest: +SKIP
...     extent = log_extent(db)
...     rate = event_rate(db, extent.first_ns, extent.last_ns)
"""

from __future__ import annotations

import contextlib
import json
import math
import shlex
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd

from loom_kernel.errors import LoomError, ProtocolError, TopicError
from loom_kernel.protocol import compile_pattern, decode_frames, validate_topic

__all__ = [
    "EventRow",
    "Extent",
    "Rate",
    "TraceRow",
    "Window",
    "axis_ms",
    "bucket_ns",
    "bucket_text",
    "clock",
    "epoch_ns",
    "event_detail",
    "event_frame",
    "event_rate",
    "local_time",
    "log_extent",
    "matching_streams",
    "open_read_only",
    "parse_namespace",
    "parse_patterns",
    "replay_command",
    "trace_frame",
    "window_count",
    "window_events",
    "window_traces",
]

#: Bucket widths of the rate plot, in seconds: the smallest giving at most ``buckets``.
NICE_BUCKETS_S = (
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800,
    3600, 7200, 10800, 21600, 43200, 86400,
)  # fmt: skip
PREVIEW_CHARS = 120


@dataclass(frozen=True)
class Extent:
    """What the event log holds: its first and last event's times (ns) and how many."""

    first_ns: int
    last_ns: int
    events: int


@dataclass(frozen=True)
class Window:
    """A time window (ns, both ends included) and topic patterns (empty: every topic)."""

    start_ns: int
    end_ns: int
    patterns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rate:
    """Events per bucket: ``starts`` (ns) of ``width_ns`` buckets, ``counts`` of every
    event, ``matched`` of those on the patterns' topics (None without patterns)."""

    starts: list[int]
    counts: list[int]
    matched: list[int] | None
    width_ns: int


@dataclass(frozen=True)
class EventRow:
    """One logged event as the table shows it."""

    pos: int
    ts_ns: int
    topic: str
    source: str
    seq: int
    type: str
    preview: str


@dataclass(frozen=True)
class TraceRow:
    """One trace with spans in a window."""

    trace_id: str
    root: str
    start_ns: int
    duration_ms: float
    spans: int
    errors: int


# -- opening ------------------------------------------------------------------------------


@contextlib.contextmanager
def open_read_only(path: str | Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to an SQLite file (raises ``LoomError`` when it is missing
    or not a database)."""
    target = Path(path).resolve()
    if not target.is_file():
        raise LoomError(f"no file {target}")
    try:
        db = sqlite3.connect(f"file:{quote(str(target))}?mode=ro", uri=True, timeout=10.0)
    except sqlite3.Error as exc:
        raise LoomError(f"cannot read {target}: {exc}") from None
    try:
        yield db
    except sqlite3.DatabaseError as exc:
        raise LoomError(f"cannot read {target}: {exc}") from None
    finally:
        db.close()


# -- the filter ---------------------------------------------------------------------------


def parse_patterns(text: str) -> tuple[str, ...]:
    """Topic patterns from a comma-separated text (as ``loom replay --topics``).

    Raises:
        TopicError: a pattern breaks the kernel's rules (the message names it).
    """
    patterns = tuple(part.strip() for part in text.split(",") if part.strip())
    for pattern in patterns:
        compile_pattern(pattern)  # its TopicError names the pattern and the rule
    return patterns


def parse_namespace(text: str) -> str:
    """The namespace to replay into: one topic segment (raises ``LoomError``)."""
    name = text.strip()
    try:
        validate_topic(name)
    except TopicError as exc:
        raise LoomError(f"namespace {name!r}: {exc}") from None
    if "." in name:
        raise LoomError(f"namespace {name!r}: one topic segment, e.g. what-if")
    return name


def matching_streams(db: sqlite3.Connection, patterns: Sequence[str]) -> list[int] | None:
    """The ids of the streams whose topic matches one of ``patterns`` (None: no patterns,
    every stream)."""
    if not patterns:
        return None
    compiled = [compile_pattern(p) for p in patterns]
    return [
        sid
        for sid, topic in db.execute("SELECT id, topic FROM streams")
        if any(p.matches(topic) for p in compiled)
    ]


# -- aggregates ---------------------------------------------------------------------------


def log_extent(db: sqlite3.Connection) -> Extent | None:
    """The first and last event's times and the event count (None: no events)."""
    # one min() or max() per statement: SQLite then reads it off the index's end
    first = db.execute("SELECT min(ts) FROM events").fetchone()[0]
    if first is None:
        return None
    last = db.execute("SELECT max(ts) FROM events").fetchone()[0]
    low = db.execute("SELECT min(pos) FROM events").fetchone()[0]
    high = db.execute("SELECT max(pos) FROM events").fetchone()[0]
    return Extent(first, last, high - low + 1)


def bucket_ns(span_ns: int, buckets: int = 120) -> int:
    """The bucket width for ``span_ns`` of time: the smallest of :data:`NICE_BUCKETS_S`
    that makes at most ``buckets`` buckets (at least a day past that)."""
    for seconds in NICE_BUCKETS_S:
        width = int(seconds * 1e9)
        if span_ns / width <= buckets:
            return width
    return int(math.ceil(span_ns / buckets / 86400e9) * 86400e9)


def event_rate(
    db: sqlite3.Connection,
    start_ns: int,
    end_ns: int,
    streams: Sequence[int] | None = None,
    buckets: int = 120,
) -> Rate:
    """Events per bucket between ``start_ns`` and ``end_ns`` (buckets aligned on their
    width), and of those on ``streams`` when given: two ``GROUP BY`` over the time index."""
    width = bucket_ns(max(1, end_ns - start_ns), buckets)
    origin = start_ns - start_ns % width
    starts = list(range(origin, end_ns + 1, width))
    counts = _bucketed(db, origin, end_ns, width, len(starts), None)
    matched = (
        None if streams is None else _bucketed(db, origin, end_ns, width, len(starts), streams)
    )
    return Rate(starts, counts, matched, width)


def _bucketed(
    db: sqlite3.Connection,
    origin: int,
    end_ns: int,
    width: int,
    size: int,
    streams: Sequence[int] | None,
) -> list[int]:
    where, params = _where(origin, end_ns, streams)
    counts = [0] * size
    sql = f"SELECT (ts - ?) / ?, count(*) FROM events WHERE {where} GROUP BY 1"
    for bucket, count in db.execute(sql, (origin, width, *params)):
        if 0 <= bucket < size:
            counts[bucket] = count
    return counts


def window_count(db: sqlite3.Connection, window: Window, streams: Sequence[int] | None) -> int:
    """How many events the window holds (on ``streams`` when given)."""
    where, params = _where(window.start_ns, window.end_ns, streams)
    return db.execute(f"SELECT count(*) FROM events WHERE {where}", params).fetchone()[0]


def _where(start_ns: int, end_ns: int, streams: Sequence[int] | None) -> tuple[str, list[Any]]:
    if streams is None:
        return "ts BETWEEN ? AND ?", [start_ns, end_ns]
    # the ids as one JSON parameter: no limit on how many streams match
    return (
        "ts BETWEEN ? AND ? AND stream IN (SELECT value FROM json_each(?))",
        [start_ns, end_ns, json.dumps(list(streams))],
    )


# -- events -------------------------------------------------------------------------------


def window_events(
    db: sqlite3.Connection, window: Window, streams: Sequence[int] | None, limit: int = 500
) -> list[EventRow]:
    """The newest ``limit`` events of the window (on ``streams`` when given), newest first:
    SQLite walks the time index back from the window's end and stops at ``limit``."""
    where, params = _where(window.start_ns, window.end_ns, streams)
    rows = db.execute(
        "SELECT pos, ts, s.topic, s.source, seq, header, payload FROM events "
        f"JOIN streams s ON s.id = stream WHERE {where} ORDER BY ts DESC, pos DESC LIMIT ?",
        (*params, limit),
    )
    return [_row(*row) for row in rows]


def _row(
    pos: int, ts: int, topic: str, source: str, seq: int, header: bytes, payload: bytes
) -> EventRow:
    try:
        event = decode_frames([topic.encode(), header, payload])
        kind, preview = event.type, _preview(event.data)
    except ProtocolError as exc:  # recorded from the wire, so it decoded once: a bad row
        kind, preview = "?", f"(cannot decode: {exc})"
    return EventRow(pos, ts, topic, source, seq, kind, preview)


def _preview(data: Any) -> str:
    if isinstance(data, bytes):
        text = f"<{len(data):,} bytes>"
    else:
        text = json.dumps(data, default=str, ensure_ascii=False)
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def event_detail(db: sqlite3.Connection, pos: int) -> dict[str, Any] | None:
    """One logged event whole: its header fields and its decoded payload (None: gone)."""
    row = db.execute(
        "SELECT s.topic, e.header, e.payload FROM events e JOIN streams s ON s.id = e.stream "
        "WHERE e.pos = ?",
        (pos,),
    ).fetchone()
    if row is None:
        return None
    topic, header, payload = row
    try:
        event = decode_frames([topic.encode(), header, payload])
    except ProtocolError as exc:
        return {"pos": pos, "topic": topic, "error": str(exc)}
    data = event.data
    return {
        "pos": pos,
        "topic": event.topic,
        "time": _iso(event.ts),
        "source": event.source,
        "seq": event.seq,
        "type": event.type,
        "id": event.id,
        **{
            key: value
            for key, value in (
                ("thread_id", event.thread_id),
                ("correlation_id", event.correlation_id),
                ("reply_to", event.reply_to),
                ("traceparent", event.traceparent),
                ("headers", event.headers),
            )
            if value
        },
        "data": f"<{len(data):,} bytes>" if isinstance(data, bytes) else data,
    }


# -- traces -------------------------------------------------------------------------------


def window_traces(db: sqlite3.Connection, window: Window, limit: int = 100) -> list[TraceRow]:
    """The newest ``limit`` traces with a span starting in the window (over the span
    store's ``spans`` table), each summed over all its spans, newest first."""
    rows = db.execute(
        "SELECT s.trace_id, min(s.start_ns), max(s.end_ns), count(*), sum(s.status = 'error'), "
        "(SELECT r.name FROM spans r WHERE r.trace_id = s.trace_id "
        " ORDER BY r.parent_id IS NOT NULL, r.start_ns LIMIT 1) "
        "FROM spans s WHERE s.trace_id IN (SELECT trace_id FROM spans WHERE start_ns "
        "BETWEEN ? AND ? GROUP BY trace_id ORDER BY min(start_ns) DESC LIMIT ?) "
        "GROUP BY s.trace_id ORDER BY min(s.start_ns) DESC",
        (window.start_ns, window.end_ns, limit),
    ).fetchall()
    return [
        TraceRow(trace, root or "?", start, round((end - start) / 1e6, 3), count, errors or 0)
        for trace, start, end, count, errors, root in rows
    ]


# -- replay -------------------------------------------------------------------------------


def replay_command(window: Window, namespace: str = "replay") -> str:
    """The ``loom replay`` command line publishing the window's events again into
    ``namespace``: ISO times in local time with their offset, to the millisecond (the
    start rounded down, the end up: the command takes every event the window shows)."""
    parts = [
        "loom replay",
        f"--from {_iso(window.start_ns, up=False)}",
        f"--to {_iso(window.end_ns, up=True)}",
    ]
    if window.patterns:
        parts.append(f"--topics {shlex.quote(','.join(window.patterns))}")
    parts.append(f"--into {shlex.quote(namespace)}")
    return " ".join(parts)


def _iso(ts_ns: int, *, up: bool = False) -> str:
    ms = -(-ts_ns // 1_000_000) if up else ts_ns // 1_000_000
    # whole seconds, then the milliseconds: a float of epoch seconds would round them
    moment = datetime.fromtimestamp(ms // 1000).astimezone() + timedelta(milliseconds=ms % 1000)
    return moment.isoformat(timespec="milliseconds")


# -- display ------------------------------------------------------------------------------


def event_frame(rows: list[EventRow], with_date: bool) -> pd.DataFrame:
    return _frame(
        {
            "time": [clock(r.ts_ns, with_date) for r in rows],
            "topic": [r.topic for r in rows],
            "source": [r.source for r in rows],
            "seq": pd.Series([r.seq for r in rows], dtype="int64"),
            "type": [r.type for r in rows],
            "payload": [r.preview for r in rows],  # last: the longest text
            "pos": [str(r.pos) for r in rows],
        }
    )


def trace_frame(rows: list[TraceRow], with_date: bool) -> pd.DataFrame:
    return _frame(
        {
            "trace": [r.trace_id[:12] for r in rows],
            "started": [clock(r.start_ns, with_date) for r in rows],
            "root": [r.root for r in rows],
            "duration ms": pd.Series([r.duration_ms for r in rows], dtype="float64"),
            "spans": pd.Series([r.spans for r in rows], dtype="int64"),
            "errors": pd.Series([r.errors for r in rows], dtype="int64"),
            "trace_id": [r.trace_id for r in rows],
        }
    )


def _frame(columns: dict[str, list[str] | pd.Series]) -> pd.DataFrame:
    """Typed even when empty (Tabulator picks a column's formatter from its first dtype)."""
    return pd.DataFrame(
        {
            name: values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
            for name, values in columns.items()
        }
    )


def local_time(ns: int) -> datetime:
    """A time as this machine's wall clock, without a zone (what the slider shows)."""
    return datetime.fromtimestamp(ns // 10**9) + timedelta(microseconds=ns % 10**9 // 1000)


def epoch_ns(moment: datetime) -> int:
    """The slider's wall-clock time back in ns since the epoch, to the millisecond."""
    return round(moment.timestamp() * 1000) * 1_000_000


def axis_ms(ns: int) -> float:
    """A time on the plot's datetime axis: ms of the local wall clock (as the slider)."""
    moment = local_time(ns)
    return (moment - datetime(1970, 1, 1)).total_seconds() * 1000


def clock(ns: int, with_date: bool) -> str:
    """``HH:MM:SS.mmm`` of the local wall clock, the date first when ``with_date``."""
    text = f"{local_time(ns):%Y-%m-%d %H:%M:%S.%f}"[:-3]
    return text if with_date else text[11:]


def bucket_text(seconds: float) -> str:
    """A bucket's width as people say it: ``200 ms``, ``5 s``, ``15 min``, ``1 h``."""
    if seconds < 1:
        return f"{seconds * 1000:g} ms"
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    return f"{seconds / 3600:g} h"
