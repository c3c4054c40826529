"""The span store: SQLite queries on hand-built spans, then what a real runtime collects."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from loom_kernel import Agent, LoomError, Runtime, on_event, open_runtime
from loom_kernel.protocol.spans import Span, SpanEvent, parse_traceparent
from loom_kernel.tracing.store import SpanStore, TraceSummary
from tests.conftest import WAIT, wait_until

pytestmark = pytest.mark.timeout(60)

T0 = 1_700_000_000 * 10**9  # ns: every hand-built span starts at T0 + a few ms
MS = 10**6
A, B, C = "a" * 32, "b" * 32, "c" * 32


def make_span(
    trace_id: str,
    span_id: int,
    parent_id: int | None,
    name: str,
    start_ms: float,
    duration_ms: float,
    **fields: Any,
) -> Span:
    """A finished span starting ``start_ms`` after T0 (span ids are small ints in hex)."""
    start = T0 + int(start_ms * MS)
    return Span(
        trace_id=trace_id,
        span_id=f"{span_id:016x}",
        parent_id=None if parent_id is None else f"{parent_id:016x}",
        name=name,
        start_ns=start,
        end_ns=start + int(duration_ms * MS),
        **fields,
    )


def epoch(ms_after_t0: float) -> float:
    return (T0 + ms_after_t0 * MS) / 1e9


# Three traces: A (a request, all fine), B (an LLM call, an error), C (one span).
SPANS = [
    make_span(A, 1, None, "publish job.start", 0, 10, kind="producer", agent="rt", service="app"),
    make_span(A, 2, 1, "handle job.start", 1, 8, kind="consumer", agent="planner", service="app"),
    make_span(
        A,
        3,
        2,
        "request calc.square",
        2,
        4,
        kind="client",
        agent="planner",
        service="app",
        attributes={"loom.topic": "calc.square"},
    ),
    make_span(A, 4, 3, "handle calc.square", 3, 2, agent="calc", service="app", status="ok"),
    make_span(B, 5, None, "publish job.start", 100, 50, agent="rt", service="app"),
    make_span(
        B,
        6,
        5,
        "handle job.start",
        101,
        48,
        agent="planner",
        service="app",
        status="error",
        status_message="ValueError: bad job",
    ),
    make_span(
        B,
        7,
        6,
        "chat deepseek/deepseek-chat",
        102,
        38,
        kind="client",
        agent="planner",
        service="llm",
        attributes={
            "gen_ai.request.model": "deepseek/deepseek-chat",
            "gen_ai.usage.input_tokens": 42,
            "gen_ai.request.temperature": 0.5,
            "loom.streamed": True,
        },
    ),
    make_span(C, 8, None, "tick", 200, 1, agent="clock", service="other"),
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SpanStore]:
    store = SpanStore(tmp_path / "traces.db")
    yield store
    store.close()


@pytest.fixture
def filled(store: SpanStore) -> SpanStore:
    store.add(reversed(SPANS))  # stored out of order: reads must sort
    return store


def names(spans: list[Span]) -> list[str]:
    return [span.name for span in spans]


def ids(spans: list[Span]) -> list[int]:
    return [int(span.span_id, 16) for span in spans]


# -- writing ---------------------------------------------------------------------------


def test_add_returns_how_many_spans_were_new(store: SpanStore) -> None:
    assert store.add(SPANS[:3]) == 3
    assert store.add(SPANS[2:5]) == 2  # SPANS[2] is already there
    assert store.add([SPANS[5], SPANS[5]]) == 1  # a duplicate within one batch too
    assert store.add([]) == 0
    assert store.add(span for span in SPANS) == 2  # any iterable
    assert store.count() == len(SPANS)


def test_a_duplicate_keeps_the_first_version(store: SpanStore) -> None:
    store.add([SPANS[0]])
    store.add([make_span(A, 1, None, "renamed", 0, 99)])
    assert names(store.trace(A)) == ["publish job.start"]


def test_the_store_file_and_its_folder_are_created_on_first_use(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "traces.db"
    store = SpanStore(path)
    assert not path.exists()  # nothing happens before the first use
    try:
        assert store.count() == 0
        assert path.is_file()
    finally:
        store.close()


def test_an_unwritable_path_raises_loom_error_naming_it(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    path = blocker / "traces.db"
    store = SpanStore(path)
    with pytest.raises(LoomError) as caught:
        store.add(SPANS[:1])
    assert str(path) in str(caught.value)
    assert "store_path" in str(caught.value)  # says which setting to fix


def test_events_links_and_attributes_round_trip(store: SpanStore) -> None:
    span = Span(
        trace_id=A,
        span_id="1" * 16,
        parent_id="2" * 16,
        name="chat model",
        kind="client",
        start_ns=T0,
        end_ns=T0 + 5 * MS,
        status="error",
        status_message="TimeoutError: slow",
        service="svc",
        agent="writer",
        attributes={"n": 3, "f": 0.25, "s": "x", "b": False, "none": None, "list": [1, "a"]},
        events=[SpanEvent("retry", T0 + MS, {"attempt": 2}), SpanEvent("done", T0 + 4 * MS)],
        links=[(B, "3" * 16), (C, "4" * 16)],
        sampled=False,
    )
    store.add([span])
    (back,) = store.trace(A)
    assert back == span
    assert back.links == [(B, "3" * 16), (C, "4" * 16)]
    assert back.events[0] == SpanEvent("retry", T0 + MS, {"attempt": 2})
    assert back.duration_ms == 5.0


def test_a_failed_span_keeps_its_exception_event(store: SpanStore) -> None:
    span = make_span(A, 1, None, "handle job", 0, 1)
    try:
        raise ValueError("no such job")
    except ValueError as exc:
        span.fail(exc)
    store.add([span])
    (back,) = store.trace(A)
    assert back.status == "error"
    assert back.status_message == "ValueError: no such job"
    (event,) = back.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "ValueError"
    assert "no such job" in event.attributes["exception.stacktrace"]


def test_an_attribute_json_cannot_encode_is_stored_as_its_text(store: SpanStore) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    store.add([make_span(A, 1, None, "x", 0, 1, attributes={"when": when})])
    assert store.trace(A)[0].attributes == {"when": str(when)}


# -- one trace, many traces ------------------------------------------------------------


def test_trace_returns_its_spans_in_start_order(filled: SpanStore) -> None:
    assert ids(filled.trace(A)) == [1, 2, 3, 4]
    assert ids(filled.trace(B)) == [5, 6, 7]
    assert filled.trace("f" * 32) == []


def test_trace_refuses_an_empty_id(filled: SpanStore) -> None:
    with pytest.raises(LoomError, match="trace_id='': use a non-empty str"):
        filled.trace("")


def test_traces_summarises_each_trace_newest_first(filled: SpanStore) -> None:
    assert filled.traces() == [
        TraceSummary(C, "tick", 1, ("clock",), T0 + 200 * MS, 1.0, 0),
        TraceSummary(B, "publish job.start", 3, ("planner", "rt"), T0 + 100 * MS, 50.0, 1),
        TraceSummary(A, "publish job.start", 4, ("calc", "planner", "rt"), T0, 10.0, 0),
    ]


def test_trace_summary_to_dict_is_json_ready(filled: SpanStore) -> None:
    assert filled.traces(limit=1)[0].to_dict() == {
        "trace_id": C,
        "root": "tick",
        "spans": 1,
        "agents": ["clock"],
        "start_ns": T0 + 200 * MS,
        "duration_ms": 1.0,
        "errors": 0,
    }


def test_traces_root_is_the_span_without_parent_even_if_a_child_started_first(
    store: SpanStore,
) -> None:
    # another process's clock runs 1 ms ahead: its child span "starts" before the root
    store.add(
        [
            make_span(A, 2, 1, "handle job", -1, 3, agent="remote"),
            make_span(A, 1, None, "publish job", 0, 5, agent="local"),
        ]
    )
    (summary,) = store.traces()
    assert summary.root == "publish job"
    assert summary.start_ns == T0 - MS
    assert summary.duration_ms == 6.0


def test_traces_root_falls_back_to_the_first_span_when_the_root_is_not_stored(
    store: SpanStore,
) -> None:
    # the trace began in a process that does not publish here (remote parent 99)
    store.add([make_span(A, 3, 2, "later", 2, 1), make_span(A, 2, 99, "first", 1, 3)])
    assert store.traces()[0].root == "first"


def test_traces_filters(filled: SpanStore) -> None:
    def found(**filters: Any) -> list[str]:
        return [summary.trace_id for summary in filled.traces(**filters)]

    assert found(errors_only=True) == [B]
    assert found(agent="calc") == [A]
    assert found(agent="planner") == [B, A]
    assert found(agent="nobody") == []
    assert found(since=epoch(150)) == [C]
    assert found(since=datetime.fromtimestamp(epoch(50), tz=UTC)) == [C, B]
    assert found(limit=2) == [C, B]
    assert found(agent="planner", errors_only=True) == [B]


def test_traces_and_spans_of_a_set_of_agents(filled: SpanStore) -> None:
    """A tenant's view: the traces (and spans) of its agents only."""
    assert [t.trace_id for t in filled.traces(agents={"calc", "clock"})] == [C, A]
    assert filled.traces(agents=set()) == []
    assert {span.agent for span in filled.query(agents=["calc", "clock"])} == {"calc", "clock"}
    assert filled.query(agents=[]) == []


def test_traces_by_span_name_and_size(filled: SpanStore) -> None:
    def found(**filters: Any) -> list[str]:
        return [summary.trace_id for summary in filled.traces(**filters)]

    assert found(name="chat") == [B]  # a span of B's is `chat deepseek/...`
    assert found(name="job.start") == [B, A]
    assert found(min_spans=3) == [B, A]
    assert found(min_spans=4) == [A]
    assert found(name="tick", min_spans=2) == []
    with pytest.raises(LoomError, match="min_spans=0: use an int >= 1"):
        filled.traces(min_spans=0)


def test_only_settled_traces_when_asked(store: SpanStore) -> None:
    now = time.time_ns()
    store.add(
        [
            Span(A, "1" * 16, None, "done", start_ns=now - 10 * 10**9, end_ns=now - 9 * 10**9),
            Span(B, "2" * 16, None, "arriving", start_ns=now - 10**8, end_ns=now),
        ]
    )
    assert [summary.root for summary in store.traces(settled=2.0)] == ["done"]
    assert store.last_trace_id() == B
    assert store.last_trace_id(settled=2.0) == A
    assert store.last_trace_id(settled=2.0, name="nothing") is None


def test_traces_since_a_timedelta_counts_back_from_now(store: SpanStore) -> None:
    now = time.time_ns()
    store.add(
        [
            Span(A, "1" * 16, None, "old", start_ns=now - 7200 * 10**9, end_ns=now - 7199 * 10**9),
            Span(B, "2" * 16, None, "recent", start_ns=now - 10**9, end_ns=now),
        ]
    )
    assert [summary.root for summary in store.traces(since=timedelta(hours=1))] == ["recent"]
    assert [summary.root for summary in store.traces(since=timedelta(hours=3))] == [
        "recent",
        "old",
    ]


def test_last_trace_id_and_count(store: SpanStore) -> None:
    assert store.last_trace_id() is None
    assert store.count() == 0
    store.add(SPANS[4:7])
    assert store.last_trace_id() == B
    store.add(SPANS)
    assert store.last_trace_id() == C
    assert store.count() == len(SPANS)


# -- query -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({}, [8, 7, 6, 5, 4, 3, 2, 1]),
        ({"trace_id": A}, [4, 3, 2, 1]),
        ({"agent": "planner"}, [7, 6, 3, 2]),
        ({"name": "chat"}, [7]),
        ({"name": "job.start"}, [6, 5, 2, 1]),
        ({"name": "square"}, [4, 3]),
        ({"status": "error"}, [6]),
        ({"status": "ok"}, [4]),
        ({"status": "unset"}, [8, 7, 5, 3, 2, 1]),
        ({"min_duration_ms": 30}, [7, 6, 5]),
        ({"min_duration_ms": 38.0}, [7, 6, 5]),  # inclusive
        ({"min_duration_ms": 0}, [8, 7, 6, 5, 4, 3, 2, 1]),
        ({"since": epoch(100.5)}, [8, 7, 6]),
        ({"until": epoch(1.5)}, [2, 1]),
        ({"since": epoch(0.5), "until": epoch(101.5)}, [6, 5, 4, 3, 2]),
        ({"since": datetime.fromtimestamp(epoch(150), tz=UTC)}, [8]),
        ({"until": datetime.fromtimestamp(epoch(0.5), tz=UTC)}, [1]),
        ({"since": T0 // 10**9 + 1}, []),  # an int is epoch seconds too
        ({"attribute": ("gen_ai.usage.input_tokens", 42)}, [7]),
        ({"attribute": ("gen_ai.usage.input_tokens", 43)}, []),
        ({"attribute": ("gen_ai.usage.input_tokens", "42")}, []),  # types matter
        ({"attribute": ("gen_ai.request.temperature", 0.5)}, [7]),
        ({"attribute": ("gen_ai.request.model", "deepseek/deepseek-chat")}, [7]),
        ({"attribute": ("loom.topic", "calc.square")}, [3]),
        ({"attribute": ("loom.streamed", True)}, [7]),
        ({"attribute": ("no.such.key", "x")}, []),
        ({"service": "llm"}, [7]),
        ({"service": "other"}, [8]),
        ({"limit": 3}, [8, 7, 6]),
        ({"limit": 1, "agent": "planner"}, [7]),
        ({"agent": "planner", "status": "error", "min_duration_ms": 40}, [6]),
        ({"trace_id": B, "name": "handle"}, [6]),
    ],
)
def test_query_filters(filled: SpanStore, filters: dict[str, Any], expected: list[int]) -> None:
    assert ids(filled.query(**filters)) == expected


def test_query_since_and_until_take_a_timedelta_back_from_now(store: SpanStore) -> None:
    now = time.time_ns()
    store.add(
        [
            Span(A, "1" * 16, None, "old", start_ns=now - 7200 * 10**9, end_ns=now - 7199 * 10**9),
            Span(A, "2" * 16, "1" * 16, "recent", start_ns=now - 10**9, end_ns=now),
        ]
    )
    assert names(store.query(since=timedelta(hours=1))) == ["recent"]
    assert names(store.query(until=timedelta(hours=1))) == ["old"]
    assert names(store.query(since=timedelta(hours=3), until=timedelta(seconds=0))) == [
        "recent",
        "old",
    ]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"trace_id": 123}, "trace_id=123: use a non-empty str"),
        ({"agent": ""}, "agent='': use a non-empty str"),
        ({"service": b"svc"}, "service=b'svc': use a non-empty str"),
        ({"name": 5}, "name=5: use a non-empty str"),
        ({"status": "bad"}, "status='bad': use 'ok', 'error' or 'unset'"),
        ({"status": "ERROR"}, "status='ERROR': use 'ok', 'error' or 'unset'"),
        ({"min_duration_ms": -1}, "min_duration_ms=-1: use a number >= 0"),
        ({"min_duration_ms": "slow"}, "min_duration_ms='slow': use a number >= 0"),
        ({"since": "yesterday"}, "since='yesterday': use epoch seconds, a datetime or a timedelta"),
        ({"until": True}, "until=True: use epoch seconds, a datetime or a timedelta"),
        ({"since": "2026-01-01"}, "since='2026-01-01': use epoch seconds"),
        ({"attribute": ("key",)}, "attribute=('key',): use a (key, value) pair"),
        ({"attribute": ("k", "v", "w")}, "use a (key, value) pair"),
        ({"attribute": ["k", "v"]}, "attribute=['k', 'v']: use a (key, value) pair"),
        ({"attribute": "k=v"}, "attribute='k=v': use a (key, value) pair"),
        ({"limit": 0}, "limit=0: use an int from 1 to 100000"),
        ({"limit": 100_001}, "limit=100001: use an int from 1 to 100000"),
        ({"limit": 2.5}, "limit=2.5: use an int from 1 to 100000"),
        ({"limit": "10"}, "limit='10': use an int from 1 to 100000"),
    ],
)
def test_query_refuses_a_bad_filter_saying_what_to_pass(
    filled: SpanStore, filters: dict[str, Any], message: str
) -> None:
    with pytest.raises(LoomError) as caught:
        filled.query(**filters)
    assert message in str(caught.value)


@pytest.mark.parametrize("value", [[1, "a"], {"a": 1}])
def test_query_refuses_an_attribute_value_it_cannot_compare(filled: SpanStore, value: Any) -> None:
    with pytest.raises(LoomError, match="attribute="):
        filled.query(attribute=("list", value))


@pytest.mark.parametrize("limit", [0, -1, "x"])
def test_traces_refuses_a_bad_limit(filled: SpanStore, limit: Any) -> None:
    with pytest.raises(LoomError, match="limit="):
        filled.traces(limit=limit)


def test_traces_refuses_a_bad_since_or_agent(filled: SpanStore) -> None:
    with pytest.raises(LoomError, match="since='today': use epoch seconds"):
        filled.traces(since="today")
    with pytest.raises(LoomError, match="agent='': use a non-empty str"):
        filled.traces(agent="")


# -- purge -----------------------------------------------------------------------------


def test_purge_drops_spans_past_the_retention_time(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "traces.db", retention_hours=1.0)
    try:
        hour = 3600 * 1000  # ms
        store.add(
            [
                make_span(A, 1, None, "two hours old", 0, 1),
                make_span(B, 2, None, "half an hour old", 1.5 * hour, 1),
                make_span(C, 3, None, "just now", 2 * hour, 1),
            ]
        )
        now = epoch(2 * hour)
        assert store.purge(now=now) == 1
        assert names(store.query()) == ["just now", "half an hour old"]
        assert store.purge(now=now) == 0
        assert store.purge(now=now + 3600) == 1  # the half-hour-old span is now 1.5 h old
        assert names(store.query()) == ["just now"]
    finally:
        store.close()


def test_the_store_never_holds_more_than_max_spans(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "traces.db", max_spans=1000)
    try:
        assert (
            store.add(make_span(A, i + 1, None, f"span {i}", i, 0.5) for i in range(1500)) == 1000
        )
        assert store.count() == 1000
        assert store.query(limit=100_000)[-1].name == "span 500"  # the oldest left
        for i in range(1500, 1510):  # one batch at a time: the oldest make room for each
            assert store.add([make_span(B, i + 1, None, f"span {i}", i, 0.5)]) == 1
            assert store.count() == 1000
        assert store.query(limit=100_000)[-1].name == "span 510"
        assert store.purge(now=epoch(1510)) == 0
        assert store.statistics().dropped == 510
    finally:
        store.close()


def test_purge_by_max_spans_keeps_max_spans_when_start_times_tie(tmp_path: Path) -> None:
    store = SpanStore(tmp_path / "traces.db", max_spans=1000)
    try:
        store.add(make_span(A, i + 1, None, "same start", 0, 1) for i in range(1500))
        store.purge(now=epoch(0))
        assert store.count() == 1000
    finally:
        store.close()


def test_the_file_never_grows_past_max_mb(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    store = SpanStore(path, max_mb=1)
    try:
        attributes = {"payload": "x" * 300}  # ~600 bytes a span: 1 MiB holds a few thousand
        for batch in range(40):
            spans = [
                make_span(f"{batch:032x}", i + 1, None, f"span {batch}.{i}", batch * 500 + i, 1,
                          attributes=attributes)
                for i in range(500)
            ]  # fmt: skip
            store.add(spans)
            stats = store.statistics()
            assert stats.file_bytes <= 2**20  # after every batch, not only in the end
            assert path.stat().st_size <= 2**20
        assert stats.dropped > 0 and stats.spans + stats.dropped == 40 * 500
        newest = store.query(limit=1)[0]
        assert newest.name == "span 39.499"  # the oldest went, the newest stayed
    finally:
        store.close()


def test_a_full_file_makes_room_for_spans_bigger_than_those_it_holds(tmp_path: Path) -> None:
    # the room made before a batch is estimated from the spans held (small here): the big
    # ones that come next fill the file, SQLite rolls the transaction back, and the store
    # must drop more of its oldest for good and insert again, not give up
    path = tmp_path / "traces.db"
    store = SpanStore(path, max_mb=1)
    try:
        for batch in range(10):
            store.add(
                make_span(f"{batch:032x}", i + 1, None, "s", batch * 1000 + i, 1)
                for i in range(1000)
            )
        assert store.statistics().dropped > 0  # full of small spans
        big = {"payload": "y" * 4000}
        for batch in range(10, 14):
            spans = [
                make_span(f"{batch:032x}", i + 1, None, f"big {batch}.{i}", batch * 1000 + i, 1,
                          attributes=big)
                for i in range(100)
            ]  # fmt: skip
            assert store.add(spans) == 100
            assert store.statistics().file_bytes <= 2**20
        assert store.query(limit=1)[0].name == "big 13.99"
    finally:
        store.close()


def test_purge_truncates_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    store = SpanStore(path)
    try:
        store.add(make_span(A, i + 1, None, "x" * 200, i, 1) for i in range(5000))
        store.purge(now=epoch(0))
        assert store.statistics().wal_bytes == 0
    finally:
        store.close()


def test_a_version_1_store_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    with sqlite3.connect(path) as db:  # the file as the previous release wrote it
        db.execute(
            "CREATE TABLE spans (trace_id TEXT NOT NULL, span_id TEXT NOT NULL, parent_id TEXT, "
            "name TEXT NOT NULL, kind TEXT NOT NULL, start_ns INTEGER NOT NULL, end_ns INTEGER "
            "NOT NULL, duration_ns INTEGER NOT NULL, status TEXT NOT NULL, status_message TEXT, "
            "service TEXT, agent TEXT, attributes TEXT NOT NULL, events TEXT NOT NULL, links TEXT "
            "NOT NULL, sampled INTEGER NOT NULL, PRIMARY KEY (trace_id, span_id)) WITHOUT ROWID"
        )
        db.execute(
            "INSERT INTO spans VALUES (?, '0000000000000001', NULL, 'old', 'internal', 1, 2, 1, "
            "'ok', NULL, '', NULL, '{}', '[]', '[]', 1)",
            ("d" * 32,),
        )
        db.execute("PRAGMA user_version = 1")
    store = SpanStore(path, max_spans=1000)
    try:
        assert store.count() == 1
        assert store.add(SPANS) == len(SPANS)
        assert store.count() == len(SPANS) + 1
        assert names(store.query(limit=100))[-1] == "old"
    finally:
        store.close()


# -- one file, several stores ----------------------------------------------------------


def test_two_stores_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "traces.db"
    writer, reader = SpanStore(path), SpanStore(path)
    try:
        assert writer.add(SPANS[:4]) == 4
        assert reader.count() == 4
        assert reader.add(SPANS[3:]) == 4  # SPANS[3] was written by the other store
        assert ids(writer.trace(B)) == [5, 6, 7]
        assert writer.last_trace_id() == C
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        writer.close()
        reader.close()


def test_a_store_closed_opens_again_on_next_use(filled: SpanStore) -> None:
    filled.close()
    filled.close()  # idempotent
    assert filled.count() == len(SPANS)


# -- what a runtime collects -----------------------------------------------------------


class Calc(Agent):
    @on_event("calc.square")
    async def square(self, event, ctx):
        await ctx.reply(event, event.data * event.data)


class Planner(Agent):
    @on_event("job.start")
    async def plan(self, event, ctx):
        answer = await ctx.request("calc.square", event.data, timeout=WAIT)
        await ctx.emit("job.done", {"n": event.data, "square": answer.data})


class Checker(Agent):
    @on_event("job.done")
    async def check(self, event, ctx):
        if event.data["n"] < 0:
            raise ValueError(f"negative job {event.data['n']}")


async def run_jobs(rt: Runtime, *jobs: int, flush: bool = False) -> list[str]:
    """Start the three agents, run one job per value; returns each job's trace id once
    every span of the work is in the project's span store.

    ``flush`` sends the spans at once rather than at the next periodic flush.
    """
    await rt.start(Calc("calc"), Planner("planner"), Checker("checker"))
    trace_ids = []
    for job in jobs:
        sent = await rt.emit("job.start", job)
        parsed = parse_traceparent(sent.traceparent)
        assert parsed is not None, sent
        trace_ids.append(parsed[0])
    n = len(jobs)
    await wait_until(lambda: all(rt.agents[agent].statistics().handled == n for agent in rt.agents))
    if flush:
        rt.tracing.flush()
    store = rt.span_store
    try:  # every span this runtime made has ended: wait until the collector stored them
        await wait_until(lambda: store.count() == rt.tracing.statistics().recorded)
    finally:
        store.close()
    return trace_ids


WORKFLOW = {
    "publish job.start",
    "handle job.start",
    "request calc.square",
    "publish calc.square",
    "handle calc.square",
    "reply calc.square",
    "publish job.done",
    "handle job.done",
}


async def test_the_runtime_stores_each_workflow_as_one_trace(rt: Runtime, project: Path) -> None:
    ok, failed = await run_jobs(rt, 3, -2)
    store = rt.span_store
    try:
        assert store.path == project / ".loom" / "traces.db"
        summaries = {summary.trace_id: summary for summary in store.traces()}
        assert set(summaries) == {ok, failed}
        for trace_id in (ok, failed):
            summary = summaries[trace_id]
            spans = store.trace(trace_id)
            assert summary.root == "publish job.start"
            assert summary.spans == len(spans)
            assert {"calc", "planner", "checker"} <= set(summary.agents)
            assert summary.duration_ms > 0
            assert set(names(spans)) >= WORKFLOW
            (root,) = [span for span in spans if span.parent_id is None]
            assert root.name == "publish job.start"
            known = {span.span_id for span in spans}
            assert all(span.parent_id in known for span in spans if span is not root)
        assert summaries[ok].errors == 0
        assert summaries[failed].errors == 1
        assert [summary.trace_id for summary in store.traces(errors_only=True)] == [failed]
        (error,) = store.query(status="error")
        assert (error.trace_id, error.name, error.agent) == (failed, "handle job.done", "checker")
        assert error.status_message == "ValueError: negative job -2"
        assert error.events[0].attributes["exception.type"] == "ValueError"
        (served,) = store.query(trace_id=ok, name="handle calc.square")
        assert served.agent == "calc"
        assert served.kind == "server"
        (published,) = store.query(trace_id=ok, name="publish calc.square")
        assert served.parent_id == published.span_id  # the request crossed the bus
        assert published.agent == "planner"
    finally:
        store.close()


async def test_collect_false_stores_nothing(project: Path) -> None:
    (project / "loom.toml").write_text(
        "[runtime]\nheartbeat_interval = 0.2\n[tracing]\ncollect = false\n"
    )
    async with open_runtime(project / "loom.toml") as rt:
        assert rt.embedded
        batches = await rt.subscribe("loom.trace.spans.*")
        await rt.start(Calc("calc"), Planner("planner"))
        await rt.emit("job.start", 4)
        await wait_until(lambda: rt.agents["planner"].statistics().handled == 1)
        assert (await batches.get(WAIT)).type == "spans"  # spans did go on the bus...
        assert await rt.start_span_collector() is None  # ...but nobody collects them
    assert rt.tracing.statistics().exported > 0
    assert not (project / ".loom" / "traces.db").exists()


async def test_tracing_disabled_puts_no_traceparent_on_envelopes(project: Path) -> None:
    (project / "loom.toml").write_text(
        "[runtime]\nheartbeat_interval = 0.2\n[tracing]\nenabled = false\n"
    )
    async with open_runtime(project / "loom.toml") as rt:
        jobs = await rt.subscribe("job.*")
        await rt.start(Calc("calc"), Planner("planner"))
        sent = await rt.emit("job.start", 5)
        assert sent.traceparent is None
        started = await jobs.get(WAIT)
        done = await jobs.get(WAIT)
        assert (started.topic, done.topic) == ("job.start", "job.done")
        assert started.traceparent is None  # emitted by the runtime
        assert done.traceparent is None  # emitted by an agent's handler
        assert done.data == {"n": 5, "square": 25}  # the request went through
        assert await rt.start_span_collector() is None
        stats = rt.tracing.statistics()
        assert (stats.enabled, stats.recorded, stats.exported) == (False, 0, 0)
    assert not (project / ".loom" / "traces.db").exists()
