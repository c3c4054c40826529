"""The traces view on hand-built spans in a real SQLite store: the list, the lanes, the
flamegraph, the search, the heatmap and the span detail, as the Bokeh sources and the
tables hold them."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

from loom_kernel import LoomError
from loom_kernel.protocol.spans import Span, SpanEvent
from loom_kernel.tracing import store as span_store
from loom_kernel.tracing.store import SpanStore
from loom_studio.trace_data import (
    ERROR_COLOR,
    flame_labels,
    heatmap_cells,
    parse_attribute,
    trace_layout,
)
from loom_studio.traces import OPEN_ROW_CSS, SETTLE_S, Traces
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(60)

MS = 10**6
NOW = time.time_ns()
TRIP = "ab12" + "0" * 28  # three agents, an LLM call, a failed tool call
TICK = "ab34" + "0" * 28  # one span, with attributes
SLOW = "ef78" + "0" * 28  # one slow handler
OLD = "cd56" + "0" * 28  # an hour ago


def span(
    trace_id: str,
    span_id: int,
    parent_id: int | None,
    name: str,
    start_ms: float,
    duration_ms: float,
    *,
    base: int = NOW - 120_000 * MS,
    **fields: Any,
) -> Span:
    """A finished span starting ``start_ms`` after ``base`` (ids are small ints in hex)."""
    start = base + int(start_ms * MS)
    return Span(
        trace_id=trace_id,
        span_id=f"{span_id:016x}",
        parent_id=None if parent_id is None else f"{parent_id:016x}",
        name=name,
        start_ns=start,
        end_ns=start + int(duration_ms * MS),
        service="loom:trip",
        **fields,
    )


LLM = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "openai/gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.usage.input_tokens": 120,
    "gen_ai.usage.output_tokens": 35,
}
EXCEPTION = SpanEvent(
    "exception",
    NOW - 120_000 * MS + 38 * MS,
    {
        "exception.type": "ValueError",
        "exception.message": "50 does not pay for one day",
        "exception.stacktrace": "Traceback (most recent call last):\n  ...\nValueError: 50",
    },
)
SPANS = [
    span(TRIP, 1, None, "handle trip.plan", 0, 50, kind="consumer", agent="planner"),
    span(TRIP, 2, 1, "chat openai/gpt-4o-mini", 1, 20, kind="client", agent="planner",
         attributes=LLM),
    span(TRIP, 3, 1, "request weather.ask", 22, 8, kind="client", agent="planner"),
    span(TRIP, 4, 3, "handle weather.ask", 24, 4, kind="server", agent="weather"),
    span(TRIP, 5, 1, "tool budget.days", 31, 14, kind="client", agent="planner",
         status="error", status_message="ToolError: tool 'budget.days' failed"),
    span(TRIP, 6, 5, "serve budget.days", 33, 7, kind="server", agent="budget",
         status="error", status_message="ValueError: 50 does not pay for one day",
         events=[EXCEPTION], links=[(TICK, f"{7:016x}")]),
    span(TRIP, 8, 1, "publish trip.ready", 46, 1, kind="producer", agent="planner"),
    span(TICK, 7, None, "publish tick", -60_000, 2, kind="producer", agent="data",
         attributes={"market.symbol": "AAPL", "market.price": 187.5}),
    span(SLOW, 9, None, "handle slow.job", -120_000, 300, kind="consumer", agent="worker",
         status="ok"),
    span(OLD, 10, None, "publish old.event", -3_600_000, 1, kind="producer", agent="archive"),
]  # fmt: skip


@pytest.fixture
def store(tmp_path: Path) -> SpanStore:
    spans = SpanStore(tmp_path / "traces.db")
    spans.add(SPANS)
    return spans


@pytest.fixture
def view(store: SpanStore) -> Traces:
    return Traces(store=store, refresh_ms=0)


def column(source: Any, name: str) -> dict[str, Any]:
    """One column of the trace's span source, by span name."""
    return dict(zip(source.data["name"], source.data[name], strict=True))


def marked(view: Traces) -> list[str]:
    """The traces whose rows the list marks as open (by their style: no row is selected)."""
    css = view.recent.style.to_html().split("</style>")[0]
    rows = {
        int(row)
        for rule in css.split("}")
        if OPEN_ROW_CSS.split(": ")[1] in rule
        for row in re.findall(r"_row(\d+)_col", rule)
    }
    return [view.recent.value["trace_id"].iloc[row] for row in sorted(rows)]


def search(view: Traces, **values: Any) -> list[str]:
    """Set the filters (each change runs the search) and return the names found."""
    for key, value in values.items():
        view.filters[key].value = value
    return sorted(view.results.value["name"])


# -- the list of recent traces -----------------------------------------------------------


def test_recent_traces_are_listed_newest_first_with_their_summary(view: Traces) -> None:
    table = view.recent.value
    assert list(table["trace_id"]) == [TRIP, TICK, SLOW, OLD]
    trip = table.iloc[0]
    assert trip["trace"] == TRIP[:12]
    assert trip["root"] == "handle trip.plan"
    assert trip["spans"] == 7
    assert trip["agents"] == "budget, planner, weather"
    assert trip["duration ms"] == 50.0
    assert trip["errors"] == 2
    assert "10 spans" in view.header.object


def test_the_fullest_recent_trace_is_open_at_first(view: Traces) -> None:
    assert view.trace_id == TRIP
    assert marked(view) == [TRIP]
    assert view.recent.selection == []  # a selected row would scroll the list to it
    assert "7 spans" in view.trace_title.object and "2 errors" in view.trace_title.object


def test_a_click_on_a_row_opens_its_trace_and_selects_its_row(view: Traces) -> None:
    view.recent_clicks.click(SLOW)  # the browser sends the clicked row's trace id
    assert view.trace_id == SLOW
    assert view.timeline.y_range.factors == ["worker"]
    assert view.spans_source.data["name"] == ["handle slow.job"]
    assert marked(view) == [SLOW]


def test_a_click_opens_the_clicked_trace_though_the_list_moved(
    view: Traces, store: SpanStore
) -> None:
    # the page showed the list before these two arrived (rows 0 and 1 now): the click
    # names the trace, so the rows' new positions do not matter
    store.add([span(f"{n}" * 32, 20 + n, None, "publish new", 61_000, 1) for n in (1, 2)])
    view.refresh()
    view.recent_clicks.click(SLOW)
    assert view.trace_id == SLOW
    assert marked(view) == [SLOW]
    assert list(view.recent.value["trace_id"]).index(SLOW) == 4


def test_a_click_on_a_purged_trace_says_so(view: Traces) -> None:
    view.recent_clicks.click("f" * 32)
    assert view.trace_id == TRIP
    assert "no trace" in view.detail.object


def test_refresh_lists_new_traces_and_keeps_the_open_one_marked(
    view: Traces, store: SpanStore
) -> None:
    new = "9" * 32
    store.add([span(new, 11, None, "publish fresh", 60_000, 1, agent="data")])
    view.refresh()
    assert view.recent.value["trace_id"].iloc[0] == new
    assert view.trace_id == TRIP
    assert marked(view) == [TRIP]


def test_a_trace_is_listed_once_no_span_of_it_ended_for_a_while(
    store: SpanStore, view: Traces, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = time.time()
    fresh = "a" * 32  # its spans are still arriving: the newest ended just now
    store.add(
        [
            span(fresh, 30, None, "publish tick", 0, 1, base=int((now - 0.2) * 1e9)),
            span(fresh, 31, 30, "handle tick", 0.5, 1, base=int((now - 0.2) * 1e9),
                 status="error"),
        ]
    )  # fmt: skip
    view.refresh()
    assert fresh not in list(view.recent.value["trace_id"])
    assert "listed once no span of it ended for 1.5 s" in view.header.object

    monkeypatch.setattr(span_store.time, "time", lambda: now + SETTLE_S + 0.1)
    view.refresh()
    listed = view.recent.value.set_index("trace_id")
    assert listed.loc[fresh, "spans"] == 2
    assert listed.loc[fresh, "errors"] == 1  # errors are listed, once complete


# -- one trace: lanes and flamegraph ---------------------------------------------------


def test_the_timeline_has_one_lane_per_agent_first_to_act_on_top(view: Traces) -> None:
    assert view.timeline.y_range.factors == ["budget", "weather", "planner"]
    lanes = column(view.spans_source, "lane")
    assert {agent for agent, _ in lanes.values()} == {"planner", "weather", "budget"}
    assert lanes["handle weather.ask"][0] == "weather"
    # the planner's handler spans its whole lane's first row; its children share a second
    planner = {lanes[name][1] for name in lanes if lanes[name][0] == "planner"}
    assert len(planner) == 2
    assert lanes["handle trip.plan"][1] > lanes["chat openai/gpt-4o-mini"][1]
    assert lanes["chat openai/gpt-4o-mini"][1] == lanes["tool budget.days"][1]


def test_the_timeline_measures_ms_from_the_trace_start_and_colours_errors_red(
    view: Traces,
) -> None:
    start, duration = column(view.spans_source, "start"), column(view.spans_source, "duration")
    assert start["handle trip.plan"] == 0.0
    assert start["serve budget.days"] == pytest.approx(33.0)
    assert duration["chat openai/gpt-4o-mini"] == pytest.approx(20.0)
    colors, legend = column(view.spans_source, "color"), column(view.spans_source, "legend")
    assert colors["serve budget.days"] == colors["tool budget.days"] == ERROR_COLOR
    assert colors["handle weather.ask"] != ERROR_COLOR
    assert legend["tool budget.days"] == "error"
    assert legend["handle weather.ask"] == "server"
    status = column(view.spans_source, "status")
    assert status["serve budget.days"] == "error: ValueError: 50 does not pay for one day"


def test_parent_child_links_go_from_the_parents_lane_to_the_childs(view: Traces) -> None:
    links = view.links_source.data
    assert len(links["x0"]) == 6  # every span but the root
    pairs = {
        (y0[0], y1[0], round(x, 3))
        for y0, y1, x in zip(links["y0"], links["y1"], links["x0"], strict=True)
    }
    assert ("planner", "weather", 24.0) in pairs
    assert ("planner", "budget", 33.0) in pairs


def test_the_flamegraph_stacks_spans_by_depth(view: Traces) -> None:
    assert column(view.spans_source, "depth") == {
        "handle trip.plan": 0,
        "chat openai/gpt-4o-mini": 1,
        "request weather.ask": 1,
        "handle weather.ask": 2,
        "tool budget.days": 1,
        "serve budget.days": 2,
        "publish trip.ready": 1,
    }
    assert view.flamegraph.y_range.flipped  # the root at the top


def test_the_flamegraph_labels_only_the_spans_wide_enough(view: Traces) -> None:
    labels = column(view.spans_source, "label")
    assert labels["handle trip.plan"] == "handle trip.plan"
    assert labels["chat openai/gpt-4o-mini"] == "chat openai/gpt-4o-mini"
    assert labels["publish trip.ready"] == ""  # 1 ms of 50


def test_flamegraph_labels_fit_the_plots_width() -> None:
    trip = [s for s in SPANS if s.trace_id == TRIP]
    wide, narrow = flame_labels(trip, 1600), flame_labels(trip, 300)
    names = [s.name for s in sorted(trip, key=lambda s: s.start_ns)]
    assert wide[names.index("handle weather.ask")] == "handle weather.ask"
    assert narrow[names.index("chat openai/gpt-4o-mini")] == "chat openai/gpt-…"  # 20 of 50 ms
    assert narrow[names.index("handle weather.ask")] == ""  # 4 ms: hover for it
    assert trace_layout(trip, 300)[0]["label"] == narrow


def test_show_trace_accepts_a_unique_prefix(view: Traces) -> None:
    assert view.show_trace("ef7") is view
    assert view.trace_id == SLOW
    assert marked(view) == [SLOW]


@pytest.mark.parametrize(("prefix", "message"), [("ab", "ambiguous"), ("0123", "no trace")])
def test_show_trace_rejects_unknown_and_ambiguous_prefixes(
    view: Traces, prefix: str, message: str
) -> None:
    with pytest.raises(LoomError, match=message):
        view.show_trace(prefix)
    assert view.trace_id == TRIP


# -- the span detail ---------------------------------------------------------------------


def select(view: Traces, name: str) -> str:
    view.spans_source.selected.indices = [view.spans_source.data["name"].index(name)]
    return view.detail.object


def test_the_detail_of_a_failed_span_shows_its_exception(view: Traces) -> None:
    detail = select(view, "serve budget.days")
    assert "ValueError: 50 does not pay for one day" in detail
    assert "Traceback (most recent call last)" in detail
    assert "status error" in detail
    assert TICK[:12] in detail  # its link


def test_the_detail_of_an_llm_span_highlights_model_and_tokens(view: Traces) -> None:
    detail = select(view, "chat openai/gpt-4o-mini")
    genai = detail[detail.index("class='genai'") :]
    assert "model <b>gpt-4o-mini-2024-07-18</b>" in genai
    assert "input tokens <b>120</b>" in genai
    assert "output tokens <b>35</b>" in genai
    assert "gen_ai.usage.input_tokens" in detail  # and among the attributes


def test_a_span_without_llm_attributes_has_no_llm_box(view: Traces) -> None:
    assert "class='genai'" not in select(view, "handle weather.ask")


def test_the_detail_escapes_html_in_span_data(store: SpanStore, view: Traces) -> None:
    store.add([span("7" * 32, 12, None, "<b>x</b>", 0, 1, attributes={"q": "<script>"})])
    view.show_trace("777")
    detail = select(view, "<b>x</b>")
    assert "<script>" not in detail and "&lt;script&gt;" in detail


# -- search and filters -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "found"),
    [
        ({"name": "chat"}, ["chat openai/gpt-4o-mini"]),
        ({"agent": "weather"}, ["handle weather.ask"]),
        ({"status": "error"}, ["serve budget.days", "tool budget.days"]),
        ({"status": "ok"}, ["handle slow.job"]),
        ({"min_ms": 40.0}, ["handle slow.job", "handle trip.plan"]),
        ({"attribute": "gen_ai.usage.input_tokens=120"}, ["chat openai/gpt-4o-mini"]),
        ({"attribute": "market.price = 187.5"}, ["publish tick"]),
        ({"attribute": "market.symbol=AAPL"}, ["publish tick"]),
        ({"attribute": 'gen_ai.usage.input_tokens="120"'}, []),  # quoted: text
        ({"agent": "planner", "status": "error"}, ["tool budget.days"]),
        ({"name": "handle", "minutes": 30.0}, ["handle slow.job", "handle trip.plan",
                                               "handle weather.ask"]),
        ({"minutes": 3.5}, sorted(s.name for s in SPANS if s.trace_id in (TRIP, TICK))),
    ],
)  # fmt: skip
def test_search_filters_spans_across_the_store(
    view: Traces, filters: dict[str, Any], found: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # "the last N minutes" is measured from the spans' own now, however late the test runs
    monkeypatch.setattr(span_store.time, "time", lambda: NOW / 1e9)
    assert search(view, **filters) == found
    assert not view.search_message.visible


def test_the_agent_filter_offers_the_agents_seen(view: Traces) -> None:
    assert view.filters["agent"].options == [
        "any", "archive", "budget", "data", "planner", "weather", "worker",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gen_ai.request.model", "write key=value"),
        ("=42", "write key=value"),
        ('we"ird=1', "without '\"'"),
    ],
)
def test_bad_attribute_input_shows_a_message(view: Traces, text: str, message: str) -> None:
    search(view, name="chat")
    assert len(view.results.value) == 1
    search(view, attribute=text)
    assert view.search_message.visible
    assert message in view.search_message.object
    assert view.results.value.empty
    search(view, attribute="")  # fixed: the message goes, the results come back
    assert not view.search_message.visible
    assert len(view.results.value) == 1


def test_selecting_a_search_result_opens_its_trace_and_span(view: Traces) -> None:
    view.show_trace(SLOW)
    search(view, name="serve")
    view.results.selection = [0]
    assert view.trace_id == TRIP
    names = view.spans_source.data["name"]
    assert [names[i] for i in view.spans_source.selected.indices] == ["serve budget.days"]
    assert "50 does not pay for one day" in view.detail.object


def test_parse_attribute_types_the_value() -> None:
    assert parse_attribute("  ") is None
    assert parse_attribute("n=3") == ("n", 3)
    assert parse_attribute("x = 2.5") == ("x", 2.5)
    assert parse_attribute("flag=true") == ("flag", True)
    assert parse_attribute("model=gpt-4o") == ("model", "gpt-4o")
    assert parse_attribute("id='007'") == ("id", "007")
    assert parse_attribute("url=http://h/?a=b") == ("url", "http://h/?a=b")


# -- the latency heatmap ------------------------------------------------------------------


def test_heatmap_cells_hold_count_p95_and_mean_per_name_and_bucket() -> None:
    now = 1_700_000_000.0  # a multiple of 10 s
    base = int((now - 95) * 1e9)  # in the bucket starting 100 s before now
    spans = [span("1" * 32, i, None, "chat", 0, i, base=base) for i in range(1, 21)]
    spans += [span("2" * 32, 30, None, "chat", 10_000, 4, base=base)]  # next bucket
    spans += [span("3" * 32, 31, None, "publish", 0, 0.5, base=base)]
    spans += [span("4" * 32, 32, None, "chat", 0, 99, base=int((now - 2000) * 1e9))]  # too old
    cells = heatmap_cells(spans, now=now)
    rows = list(zip(*(cells[k] for k in ("name", "t", "count", "p95", "mean")), strict=True))
    assert rows == [
        ("chat", now - 100, 20, pytest.approx(19.0), pytest.approx(10.5)),
        ("chat", now - 90, 1, pytest.approx(4.0), pytest.approx(4.0)),
        ("publish", now - 100, 1, pytest.approx(0.5), pytest.approx(0.5)),
    ]
    assert heatmap_cells(spans, now=now, names=1)["name"] == ["chat", "chat"]


def test_the_heatmap_shows_the_last_15_minutes(tmp_path: Path) -> None:
    # the spans are dated from the module's import: moved to now, as a long parallel run may
    # reach this test more than 13 minutes later (the heatmap reads the wall clock)
    shift = time.time_ns() - NOW
    store = SpanStore(tmp_path / "traces.db")
    store.add(
        [
            msgspec.structs.replace(s, start_ns=s.start_ns + shift, end_ns=s.end_ns + shift)
            for s in SPANS
        ]
    )
    view = Traces(store=store, refresh_ms=0)
    data = view.heatmap_source.data
    assert "publish old.event" not in data["name"]
    assert set(data["name"]) == {s.name for s in SPANS if s.trace_id != OLD}
    assert sorted(view.heatmap.y_range.factors) == sorted(set(data["name"]))
    p95 = dict(zip(data["name"], data["p95"], strict=True))
    assert p95["handle slow.job"] == pytest.approx(300.0)
    assert view.mapper.low == pytest.approx(1.0)
    assert view.mapper.high == pytest.approx(300.0)
    span_ms = view.heatmap.x_range.end - view.heatmap.x_range.start
    assert span_ms == 15 * 60 * 1000
    assert "p95" in view.heatmap_title.object


# -- the store itself -------------------------------------------------------------------------


def test_a_missing_store_shows_no_spans_stored_yet(tmp_path: Path) -> None:
    path = tmp_path / "nothing" / "traces.db"
    view = Traces(store=path, refresh_ms=0)
    assert "No spans stored yet" in view.header.object
    assert view.recent.value.empty
    assert view.trace_id is None
    search(view, name="chat")
    assert "No spans stored yet" in view.search_message.object
    with pytest.raises(LoomError, match="no spans stored yet"):
        view.show_trace("ab")
    assert not path.exists()  # looking did not create it


def test_without_a_store_it_reads_the_projects_store_path(project: Path) -> None:
    (project / "loom.toml").write_text('[tracing]\nstore_path = "spans/t.db"\n')
    SpanStore(project / "spans" / "t.db").add(SPANS[:1])
    view = Traces(refresh_ms=0)
    assert view.store.path == project / "spans" / "t.db"
    assert list(view.recent.value["trace_id"]) == [TRIP]


def test_refresh_ms_is_at_least_a_second(store: SpanStore) -> None:
    view = Traces(store=store, refresh_ms=200)
    assert not view.running  # refreshing starts when the view is shown
    view._start()
    try:
        assert view._callback.period == 1000
    finally:
        view.stop()
    assert not view.running
    assert Traces(store=store.path, refresh_ms=0)._period == 0


async def test_the_list_refreshes_on_its_own(store: SpanStore) -> None:
    view = Traces(store=store, refresh_ms=1000)
    view._start()  # what showing it does
    try:
        store.add([span("5" * 32, 13, None, "publish later", 90_000, 1, agent="data")])
        await wait_until(lambda: view.recent.value["trace_id"].iloc[0] == "5" * 32, timeout=5)
    finally:
        view.stop()


def test_refresh_redraws_the_open_trace_when_its_spans_arrive(
    view: Traces, store: SpanStore
) -> None:
    select(view, "tool budget.days")
    store.add([span(TRIP, 14, 8, "handle trip.ready", 48, 1, kind="consumer", agent="notifier")])
    view.refresh()
    assert "handle trip.ready" in view.spans_source.data["name"]
    assert view.timeline.y_range.factors[0] == "notifier"
    names = view.spans_source.data["name"]
    assert [names[i] for i in view.spans_source.selected.indices] == ["tool budget.days"]
    assert "tool budget.days" in view.detail.object
