"""What the History view reads, on a real event log and a real span store in tmp_path:
the log's extent and rate, a window's events, count and traces, one event whole, the
topic filter, and the ``loom replay`` command for a window."""

from __future__ import annotations

import shlex
import sqlite3
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from loom_kernel import Envelope, LoomError, TopicError
from loom_kernel.cli.eventlog import parse_when
from loom_kernel.durability import EventLog
from loom_kernel.protocol.envelope import encode_data, new_id
from loom_kernel.protocol.spans import Span
from loom_kernel.tracing.store import SpanStore
from loom_studio.history_data import (
    PREVIEW_CHARS,
    Window,
    bucket_ns,
    bucket_text,
    clock,
    epoch_ns,
    event_detail,
    event_frame,
    event_rate,
    local_time,
    log_extent,
    matching_streams,
    open_read_only,
    parse_namespace,
    parse_patterns,
    replay_command,
    window_count,
    window_events,
    window_traces,
)

pytestmark = pytest.mark.timeout(60)

SECOND = 1_000_000_000
T0 = (time.time_ns() - 600 * SECOND) // SECOND * SECOND  # ten minutes ago, a whole second
TOPICS = ("orders.new.AAPL", "market.price.BTC", "market.price.ETH", "orders.paid.AAPL")


def event(topic: str, seq: int, ts: int, data: object = None, **extra: object) -> Envelope:
    payload, content_type = encode_data({"seq": seq} if data is None else data)
    return Envelope(
        topic=topic, source=f"pub-{topic.split('.')[0]}", id=new_id(), seq=seq, ts=ts,
        payload=payload, content_type=content_type, **extra,
    )  # fmt: skip


@pytest.fixture
def log_path(tmp_path: Path) -> Iterator[Path]:
    """400 events, one every 250 ms from T0 (100 s), the four topics in turn."""
    log = EventLog(tmp_path / "events.db")
    log.append(
        [event(TOPICS[i % 4], i // 4 + 1, T0 + i * SECOND // 4, {"i": i}) for i in range(400)]
    )
    log.close()
    yield tmp_path / "events.db"


@pytest.fixture
def db(log_path: Path) -> Iterator[sqlite3.Connection]:
    with open_read_only(log_path) as connection:
        yield connection


def window(start_s: float, end_s: float, *patterns: str) -> Window:
    return Window(T0 + int(start_s * SECOND), T0 + int(end_s * SECOND), patterns)


# -- opening ------------------------------------------------------------------------------


def test_a_missing_log_is_an_error_and_no_file_is_made(tmp_path: Path) -> None:
    with pytest.raises(LoomError, match="no file"), open_read_only(tmp_path / "events.db"):
        pass
    assert list(tmp_path.iterdir()) == []


def test_reading_never_writes(db: sqlite3.Connection) -> None:
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        db.execute("DELETE FROM events")


def test_an_empty_log_has_no_extent(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")
    log.statistics()  # creates the file and its tables
    log.close()
    with open_read_only(tmp_path / "events.db") as db:
        assert log_extent(db) is None


# -- extent and rate ----------------------------------------------------------------------


def test_the_extent_is_the_first_and_last_event(db: sqlite3.Connection) -> None:
    extent = log_extent(db)
    assert extent is not None
    assert (extent.first_ns, extent.last_ns, extent.events) == (T0, T0 + 399 * SECOND // 4, 400)


@pytest.mark.parametrize(
    ("span_s", "width_s"),
    [
        (0.5, 0.005 * 2),
        (100, 1),
        (600, 5),
        (86400, 900),
        (10 * 86400, 7200),
        (200 * 86400, 2 * 86400),
    ],
)
def test_buckets_are_the_smallest_nice_width_making_at_most_120(
    span_s: float, width_s: float
) -> None:
    width = bucket_ns(int(span_s * SECOND))
    assert width == int(width_s * SECOND)
    assert span_s * SECOND / width <= 120


def test_the_rate_counts_every_event_in_its_bucket(db: sqlite3.Connection) -> None:
    rate = event_rate(db, T0, T0 + 100 * SECOND)
    assert rate.width_ns == SECOND and rate.starts[0] == T0
    assert sum(rate.counts) == 400
    assert rate.counts[:100] == [4] * 100  # four events a second
    assert rate.matched is None


def test_the_rate_of_a_topic_filter_counts_only_its_events(db: sqlite3.Connection) -> None:
    streams = matching_streams(db, ["market.*"])
    rate = event_rate(db, T0, T0 + 100 * SECOND, streams)
    assert sum(rate.counts) == 400 and sum(rate.matched or []) == 200
    assert set(rate.matched or []) <= {2, 0}


def test_a_pattern_matching_nothing_counts_nothing(db: sqlite3.Connection) -> None:
    streams = matching_streams(db, ["nothing.here"])
    assert streams == []
    assert window_count(db, window(0, 100), streams) == 0
    assert window_events(db, window(0, 100), streams) == []
    assert sum(event_rate(db, T0, T0 + 100 * SECOND, streams).matched or [1]) == 0


# -- a window's events --------------------------------------------------------------------


def test_a_window_holds_the_events_between_its_ends_included(db: sqlite3.Connection) -> None:
    # events at 10.0, 10.25, ... 20.0 s: 41 of them
    assert window_count(db, window(10, 20), None) == 41
    rows = window_events(db, window(10, 20), None)
    assert len(rows) == 41
    assert [r.ts_ns for r in rows] == sorted((r.ts_ns for r in rows), reverse=True)  # newest first
    assert rows[0].ts_ns == T0 + 20 * SECOND and rows[-1].ts_ns == T0 + 10 * SECOND


def test_a_window_shows_its_newest_events_up_to_the_limit(db: sqlite3.Connection) -> None:
    rows = window_events(db, window(0, 100), None, limit=10)
    assert [r.pos for r in rows] == list(range(400, 390, -1))
    assert window_count(db, window(0, 100), None) == 400


def test_a_topic_filter_keeps_only_matching_events(db: sqlite3.Connection) -> None:
    streams = matching_streams(db, ["orders.*", "market.price.ETH"])
    rows = window_events(db, window(0, 100), streams)
    assert {r.topic for r in rows} == {"orders.new.AAPL", "orders.paid.AAPL", "market.price.ETH"}
    assert len(rows) == window_count(db, window(0, 100), streams) == 300


def test_a_row_has_the_events_fields_and_a_payload_preview(db: sqlite3.Connection) -> None:
    [row] = window_events(db, window(0, 0), None)
    assert (row.topic, row.source, row.seq, row.type) == (
        "orders.new.AAPL",
        "pub-orders",
        1,
        "event",
    )
    assert row.preview == '{"i": 0}'


def test_a_long_payload_preview_is_cut(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")
    log.append(
        [event("big.one", 1, T0, {"text": "x" * 1000}), event("raw.bytes", 1, T0, b"\0" * 70)]
    )
    log.close()
    with open_read_only(tmp_path / "events.db") as db:
        rows = {r.topic: r for r in window_events(db, window(0, 1), None)}
    assert len(rows["big.one"].preview) == PREVIEW_CHARS and rows["big.one"].preview.endswith("…")
    assert rows["raw.bytes"].preview == "<70 bytes>"


def test_the_detail_of_an_event_is_its_header_and_whole_payload(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")
    data = {"items": list(range(100)), "note": "y" * 500}
    log.append([event("orders.new", 7, T0, data, thread_id="t-1", headers={"k": "v"})])
    log.close()
    with open_read_only(tmp_path / "events.db") as db:
        detail = event_detail(db, 1)
        assert event_detail(db, 2) is None  # no such event (purged)
    assert detail is not None
    assert detail["data"] == data
    assert (detail["topic"], detail["seq"], detail["thread_id"]) == ("orders.new", 7, "t-1")
    assert detail["headers"] == {"k": "v"} and detail["source"] == "pub-orders"
    assert parse_when(detail["time"], "time") == pytest.approx(T0 / SECOND, abs=0.001)


def test_the_event_table_has_its_columns_and_the_key_of_a_click() -> None:
    frame = event_frame([], with_date=False)
    assert list(frame.columns) == ["time", "topic", "source", "seq", "type", "payload", "pos"]
    assert str(frame["seq"].dtype) == "int64"


# -- traces -------------------------------------------------------------------------------


def span(trace: str, number: int, parent: int | None, name: str, start_s: float, ms: float) -> Span:
    start = T0 + int(start_s * SECOND)
    return Span(
        trace_id=trace, span_id=f"{number:016x}",
        parent_id=None if parent is None else f"{parent:016x}", name=name, start_ns=start,
        end_ns=start + int(ms * 1_000_000), status="error" if "fail" in name else "ok",
    )  # fmt: skip


def test_the_traces_of_a_window_are_summed_over_all_their_spans(tmp_path: Path) -> None:
    early, late, outside = "a" * 32, "b" * 32, "c" * 32
    store = SpanStore(tmp_path / "traces.db")
    store.add(
        [
            span(early, 1, None, "order.place", 9.5, 2000),  # starts before the window
            span(early, 2, 1, "risk.check", 10.5, 100),  # one span inside it
            span(early, 3, 1, "tool.fail", 11.0, 50),
            span(late, 1, None, "price.tick", 15.0, 5),
            span(outside, 1, None, "old.one", 50.0, 5),
        ]
    )
    store.close()
    with open_read_only(tmp_path / "traces.db") as db:
        rows = window_traces(db, window(10, 20))
        assert [r.trace_id for r in window_traces(db, window(10, 20), limit=1)] == [late]
    assert [r.trace_id for r in rows] == [late, early]  # newest first, the old one out
    first = rows[1]
    assert (first.root, first.spans, first.errors) == ("order.place", 3, 1)
    assert first.start_ns == T0 + int(9.5 * SECOND) and first.duration_ms == 2000.0


# -- the filter and the command -----------------------------------------------------------


def test_patterns_are_comma_separated_and_checked_by_the_kernels_rules() -> None:
    assert parse_patterns(" orders.* , market.price.BTC,") == ("orders.*", "market.price.BTC")
    assert parse_patterns("  ") == ()
    with pytest.raises(TopicError, match=r"'\*' must be a whole segment"):
        parse_patterns("orders.*, market.pri*")


def test_the_namespace_is_one_topic_segment() -> None:
    assert parse_namespace(" what-if ") == "what-if"
    with pytest.raises(LoomError, match="one topic segment"):
        parse_namespace("what.if")
    with pytest.raises(LoomError, match="namespace ''"):
        parse_namespace("")


def test_the_replay_command_replays_exactly_the_window(log_path: Path) -> None:
    shown = Window(T0 + 10 * SECOND + 123_456_789, T0 + 20 * SECOND + 1, ("orders.*",))
    command = replay_command(shown, "what-if")
    words = shlex.split(command)
    assert words[:2] == ["loom", "replay"]
    args = dict(zip(words[2::2], words[3::2], strict=True))
    assert args["--topics"] == "orders.*" and args["--into"] == "what-if"
    since, until = parse_when(args["--from"], "--from"), parse_when(args["--to"], "--to")
    # the window's ends to the millisecond, the start rounded down and the end up
    assert round(since * 1000) == shown.start_ns // 1_000_000
    assert round(until * 1000) == -(-shown.end_ns // 1_000_000)
    # what `loom replay` would publish is what the window shows
    log = EventLog(log_path)
    replayed = log.query(since, until, args["--topics"].split(","), limit=10_000)
    log.close()
    with open_read_only(log_path) as db:
        streams = matching_streams(db, shown.patterns)
        listed = window_events(db, shown, streams)
        assert len(replayed) == window_count(db, shown, streams) == len(listed) == 20
    assert sorted(item.pos for item in replayed) == sorted(row.pos for row in listed)


def test_a_command_without_patterns_replays_every_topic() -> None:
    command = replay_command(window(0, 1))
    assert "--topics" not in command and command.endswith("--into replay")


# -- times as the page shows them ---------------------------------------------------------


def test_times_go_to_the_slider_and_back_to_the_millisecond() -> None:
    ns = T0 + 123_456_789
    moment = local_time(ns)
    assert moment.tzinfo is None and moment == datetime.fromtimestamp(T0 // SECOND).replace(
        microsecond=123_456
    )
    assert epoch_ns(moment) == T0 + 123_000_000
    assert clock(ns, False) == f"{moment:%H:%M:%S}.123"
    assert clock(ns, True).startswith(f"{moment:%Y-%m-%d} ")


def test_bucket_widths_read_as_people_say_them() -> None:
    assert [bucket_text(s) for s in (0.2, 5, 900, 3600)] == ["200 ms", "5 s", "15 min", "1 h"]
