"""The History view from Python, on a real event log and span store in tmp_path: the
window, the topic filter, the tables, a click on an event and on a trace, the replay
command, and what it says when the log is off or empty."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from loom_kernel import Envelope, TopicError
from loom_kernel.config import parse_config
from loom_kernel.durability import EventLog
from loom_kernel.protocol.envelope import encode_data, new_id
from loom_kernel.protocol.spans import Span
from loom_kernel.tracing.store import SpanStore
from loom_studio import History
from loom_studio.app import create_app
from loom_studio.feed import StudioFeed

pytestmark = pytest.mark.timeout(60)

SECOND = 1_000_000_000
T0 = (time.time_ns() - 120 * SECOND) // SECOND * SECOND
TRACE = "f" * 32


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """60 s of events (orders and prices, one each 100 ms) and one trace at 30 s."""
    log = EventLog(tmp_path / "events.db")
    events = []
    for i in range(600):
        topic = "orders.new.AAPL" if i % 3 == 0 else "market.price.BTC"
        payload, content_type = encode_data({"i": i, "note": "n" * 200})
        envelope = Envelope(
            topic=topic, source="feeder", id=new_id(), seq=i + 1, ts=T0 + i * SECOND // 10,
            payload=payload, content_type=content_type,
        )  # fmt: skip
        events.append(envelope)
    log.append(events)
    log.close()
    store = SpanStore(tmp_path / "traces.db")
    start = T0 + 30 * SECOND
    store.add(
        [
            Span(trace_id=TRACE, span_id="1" * 16, parent_id=None, name="order.place",
                 start_ns=start, end_ns=start + 5_000_000, status="ok", agent="planner"),
            Span(trace_id=TRACE, span_id="2" * 16, parent_id="1" * 16, name="risk.check",
                 start_ns=start + 1_000_000, end_ns=start + 2_000_000, agent="risk"),
        ]
    )  # fmt: skip
    store.close()
    return tmp_path


def view(project: Path, **options: object) -> History:
    return History(project / "events.db", store=project / "traces.db", refresh_ms=0, **options)


def test_the_window_starts_as_the_whole_log(project: Path) -> None:
    history = view(project)
    assert history.body.visible and not history.notice.visible
    assert "**600 events**" in history.header.object
    assert "showing 500 of 600 in the window (the newest 500)" in history.events_title.object
    assert history.events.value["seq"].iloc[0] == 600  # newest first
    assert list(history.traces.value["root"]) == ["order.place"]
    assert sum(history.rate_source.data["count"]) == 600
    assert history.command.value.startswith("loom replay --from ")


def test_a_window_and_a_filter_show_only_their_events(project: Path) -> None:
    history = view(project)
    history.set_window((T0 + 10 * SECOND) / 1e9, (T0 + 20 * SECOND) / 1e9, topics="orders.*")
    topics = set(history.events.value["topic"])
    assert topics == {"orders.new.AAPL"}
    assert len(history.events.value) == 33  # i = 102, 105, ... 198
    assert "on `orders.*`: showing 33 of 33" in history.events_title.object
    assert "--topics 'orders.*'" in history.command.value
    assert history.traces.value.empty  # the trace is at 30 s
    assert sum(history.rate_source.data["count"]) == 200  # the plot: the filter's rate
    assert "blue: on orders.*" in history.rate_figure.title.text


def test_a_bad_pattern_is_explained_and_the_window_kept(project: Path) -> None:
    history = view(project)
    with pytest.raises(TopicError, match="whole segment"):
        history.set_window(T0 / 1e9, (T0 + 5 * SECOND) / 1e9, topics="orders.x*")
    assert history.error.visible and "whole segment" in history.error.object
    history.pattern.value = "market.*"
    assert not history.error.visible


def test_the_namespace_goes_into_the_command(project: Path) -> None:
    history = view(project)
    history.namespace.value = "what-if"
    assert history.command.value.endswith("--into what-if")
    history.namespace.value = "what.if"
    assert history.command_error.visible and "one topic segment" in history.command_error.object


def test_a_click_on_an_event_shows_its_whole_payload(project: Path) -> None:
    history = view(project)
    pos = history.events.value["pos"].iloc[3]
    history.event_clicks.click(pos)
    shown = history.payload.object
    assert shown["pos"] == int(pos) and shown["data"]["note"] == "n" * 200


def test_a_click_on_a_trace_opens_it(project: Path) -> None:
    opened: list[str] = []
    history = view(project, on_trace=opened.append)
    history.open_trace(history.traces.value["trace_id"].iloc[0])
    assert opened == [TRACE]
    inline = view(project)  # no studio around: the trace is drawn below the list
    inline.open_trace(TRACE)
    assert inline._trace_view.trace_id == TRACE
    assert len(inline._trace_view.spans_source.data["span_id"]) == 2


def test_an_event_log_that_is_off_says_how_to_turn_it_on(tmp_path: Path) -> None:
    history = History(parse_config({}, path=tmp_path / "loom.toml"), refresh_ms=0)
    assert history.notice.visible and not history.body.visible
    assert "The event log is off" in history.notice.object
    assert "[eventlog]\nenabled = true" in history.notice.object
    assert not (tmp_path / ".loom").exists()  # nothing created


def test_an_empty_event_log_says_so(tmp_path: Path) -> None:
    config = parse_config({"eventlog": {"enabled": True}}, path=tmp_path / "loom.toml")
    history = History(config, refresh_ms=0)
    assert history.notice.visible and "No events recorded yet" in history.notice.object


def test_the_studio_has_a_history_tab(tmp_path: Path) -> None:
    config = parse_config({"eventlog": {"enabled": True}}, path=tmp_path / "loom.toml")
    app = create_app(StudioFeed(), tmp_path / "traces.db", config=config)
    tabs = app[-1]
    assert tabs._names[-1] == "History"


def test_a_file_that_is_not_a_log_is_said_not_raised(tmp_path: Path) -> None:
    (tmp_path / "events.db").write_text("not a database")
    history = History(tmp_path / "events.db", refresh_ms=0)
    assert "Cannot read the event log" in history.header.object
    assert "not a database" in history.header.object
