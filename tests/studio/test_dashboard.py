"""The dashboard: a real feed fed real envelopes, refreshed by hand or by its own callback."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import panel as pn
import pytest

from loom_kernel import Agent, Runtime, on_event
from loom_kernel.protocol.envelope import Envelope, encode_data
from loom_studio import feed as feed_module
from loom_studio.dashboard import MAX_ROWS, Dashboard, layered_layout
from loom_studio.feed import StudioFeed
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(60)

_ids = itertools.count(1)


def event(topic: str, data: Any = None, *, source: str = "feeder", type: str = "event") -> Envelope:
    payload, content_type = encode_data(data)
    return Envelope(
        topic=topic, data=data, payload=payload, content_type=content_type, source=source,
        type=type, ts=time.time_ns(), id=f"e-{next(_ids)}",
    )  # fmt: skip


def heartbeat(agent_id: str, **fields: Any) -> Envelope:
    stats = {
        "agent_id": agent_id, "status": "running", "handled": 0, "errors": 0, "emitted": 0,
        "queue_depth": 0, "dropped": 0, "lost": 0, "latency_p50_ms": 0.0,
        "latency_p99_ms": 0.0, "handler_p50_ms": 0.0, "handler_p99_ms": 0.0,
        "last_error": None, "uptime_s": 1.0,
    }  # fmt: skip
    stats.update(fields)
    return event(f"loom.agent.{agent_id}.heartbeat", stats, source=agent_id, type="heartbeat")


def span(name: str, kind: str, agent: str, attributes: dict[str, Any]) -> list[Any]:
    """A span array as published on ``loom.trace.spans.*`` (loom_kernel/spans.py)."""
    now = time.time_ns()
    return ["ab" * 16, "cd" * 8, None, name, kind, now, now + 1000, "ok", "", "svc", agent,
            attributes, [], [], True]  # fmt: skip


def spans(*items: list[Any]) -> Envelope:
    return event("loom.trace.spans.x", list(items), source="x", type="spans")


def delivered(topic: str, agent: str) -> list[Any]:
    return span(f"handle {topic}", "consumer", agent, {"messaging.destination.name": topic})


@pytest.fixture
def feed() -> StudioFeed:
    return StudioFeed()


def topics(dashboard: Dashboard) -> list[str]:
    return list(dashboard.events.table.value["topic"])


# -- agents --------------------------------------------------------------------------------


def test_agents_table_shows_each_agents_last_heartbeat(feed: StudioFeed) -> None:
    feed.ingest(heartbeat("trend", handled=12, emitted=7, queue_depth=3, dropped=2, lost=1,
                          latency_p50_ms=1.234, latency_p99_ms=9.876, uptime_s=125.0))  # fmt: skip
    feed.ingest(heartbeat("risk", status="failed", errors=2, last_error="ValueError: bad tick"))
    dashboard = Dashboard(feed)

    table = dashboard.agents.table.value
    assert list(table.index) == ["risk", "trend"]
    trend = table.loc["trend"]
    assert (trend["status"], trend["handled"], trend["emitted"], trend["queue"]) == (
        "running", 12, 7, 3,
    )  # fmt: skip
    assert (trend["dropped"], trend["lost"], trend["p50 ms"], trend["p99 ms"]) == (2, 1, 1.23, 9.88)
    assert trend["uptime"] == "2 min 05 s"
    assert table.loc["risk", "status"] == "failed"
    assert table.loc["risk", "last error"] == "ValueError: bad tick"
    assert "color: #c62828" in dashboard.agents.table.style.to_html()  # failed is red


def test_agent_whose_heartbeats_stopped_shows_as_silent(feed: StudioFeed) -> None:
    feed.ingest(heartbeat("quiet"))
    feed.ingest(heartbeat("done", status="stopped"))
    for row in feed.agents.values():
        row["seen"] = time.time() - 60  # no heartbeat for a minute
    dashboard = Dashboard(feed)

    statuses = dashboard.agents.table.value["status"].to_dict()
    assert statuses == {"done": "stopped", "quiet": "silent"}


def test_error_event_fills_the_last_error_column(feed: StudioFeed) -> None:
    dashboard = Dashboard(feed)
    feed.ingest(heartbeat("planner"))
    feed.ingest(
        event("loom.agent.planner.error", {"error": "KeyError", "message": "'AAPL'"}, type="error")
    )
    dashboard.refresh()

    assert dashboard.agents.table.value.loc["planner", "last error"] == "KeyError: 'AAPL'"


# -- header --------------------------------------------------------------------------------


def test_header_counts_running_agents_and_errors_and_says_connecting(feed: StudioFeed) -> None:
    feed.ingest(heartbeat("a", errors=2))
    feed.ingest(heartbeat("b", status="idle", errors=1))
    feed.history.append({"t": int(time.time()) - 1, "events": 42, "p50_ms": 1.0, "p99_ms": 2.0})
    dashboard = Dashboard(feed)

    header = dashboard.header
    assert (header.rate.value, header.running.value, header.errors.value) == (42, 1, 3)
    assert header.drops.value == 0
    assert "connecting" in header.connection.object


# -- event stream --------------------------------------------------------------------------


def test_new_events_are_appended_once_with_their_columns(feed: StudioFeed) -> None:
    dashboard = Dashboard(feed)
    feed.ingest(event("market.price.AAPL", {"price": 1.5}, source="feeder"))
    feed.ingest(event("news.item", "hello", source="news"))
    dashboard.refresh()
    dashboard.refresh()  # nothing new: nothing appended

    table = dashboard.events.table.value
    assert topics(dashboard) == ["market.price.AAPL", "news.item"]
    assert list(table["source"]) == ["feeder", "news"]
    assert list(table["type"]) == ["event", "event"]
    assert list(table["size"]) == [len(b'{"price":1.5}'), len(b'"hello"')]
    assert all(len(clock) == len("12:34:56.789") for clock in table["time"])

    feed.ingest(event("news.item", "again"))
    dashboard.refresh()
    assert topics(dashboard) == ["market.price.AAPL", "news.item", "news.item"]


def test_filter_keeps_only_matching_topics_including_earlier_ones(feed: StudioFeed) -> None:
    dashboard = Dashboard(feed)
    for topic in ("market.price.AAPL", "news.item", "market.price.MSFT"):
        feed.ingest(event(topic))
    dashboard.refresh()

    dashboard.events.pattern.value = "market.price.*"
    dashboard.refresh()
    assert topics(dashboard) == ["market.price.AAPL", "market.price.MSFT"]

    feed.ingest(event("news.item"))
    feed.ingest(event("market.price.IBM"))
    dashboard.refresh()
    assert topics(dashboard) == ["market.price.AAPL", "market.price.MSFT", "market.price.IBM"]

    dashboard.events.pattern.value = ""
    dashboard.refresh()
    assert len(topics(dashboard)) == 5


def test_bad_pattern_shows_the_topic_error_and_keeps_the_last_filter(feed: StudioFeed) -> None:
    dashboard = Dashboard(feed)
    feed.ingest(event("market.price.AAPL"))
    feed.ingest(event("news.item"))
    events = dashboard.events
    events.pattern.value = "news.*"
    dashboard.refresh()

    events.pattern.value = "market..price"
    dashboard.refresh()
    assert events.error.visible
    assert "empty segment" in events.error.object
    assert topics(dashboard) == ["news.item"]

    events.pattern.value = "market.*"
    dashboard.refresh()
    assert not events.error.visible
    assert topics(dashboard) == ["market.price.AAPL"]


def test_pause_holds_new_rows_and_counts_them_until_resume(feed: StudioFeed) -> None:
    dashboard = Dashboard(feed)
    events = dashboard.events
    feed.ingest(event("a.b"))
    dashboard.refresh()

    events.pause.value = True
    assert events.pause.label == "Resume"
    for _ in range(3):
        feed.ingest(event("a.c"))
    dashboard.refresh()
    assert topics(dashboard) == ["a.b"]
    assert "<b>3</b> events waiting" in events.waiting.object

    events.pause.value = False
    dashboard.refresh()
    assert topics(dashboard) == ["a.b", "a.c", "a.c", "a.c"]
    assert events.waiting.object == ""
    assert events.pause.label == "Pause"


def test_selecting_a_row_shows_its_payload(feed: StudioFeed) -> None:
    dashboard = Dashboard(feed)
    feed.ingest(event("orders.new", {"symbol": "AAPL", "qty": 3}, source="executor"))
    feed.ingest(event("blobs.raw", b"\x00\x01", source="camera"))
    dashboard.refresh()

    dashboard.events.table.selection = [0]
    shown = dashboard.events.payload.object
    assert shown["data"] == {"symbol": "AAPL", "qty": 3}
    assert (shown["topic"], shown["source"], shown["type"]) == ("orders.new", "executor", "event")

    dashboard.events.table.selection = [1]
    assert dashboard.events.payload.object["data"] == repr(b"\x00\x01")


def test_a_burst_between_refreshes_is_one_bounded_stream(
    feed: StudioFeed, monkeypatch: pytest.MonkeyPatch
) -> None:
    dashboard = Dashboard(feed)
    table = dashboard.events.table
    calls: list[int] = []
    stream = table.stream

    def counted(value: Any, **options: Any) -> None:
        calls.append(len(value))
        stream(value, **options)

    monkeypatch.setattr(table, "stream", counted)
    for n in range(2000):
        feed.ingest(event(f"burst.{n}"))
    dashboard.refresh()

    assert calls == [MAX_ROWS]
    assert topics(dashboard) == [f"burst.{n}" for n in range(2000 - MAX_ROWS, 2000)]

    for n in range(10):
        feed.ingest(event(f"more.{n}"))
    dashboard.refresh()
    assert calls == [MAX_ROWS, 10]
    assert len(table.value) == MAX_ROWS
    assert topics(dashboard)[-1] == "more.9"

    dashboard.events.pattern.value = "burst.*"  # a refill replaces the rows: still one table
    dashboard.refresh()
    assert len(table.value) == MAX_ROWS
    assert table.pagination is None  # it scrolls and follows the stream, it does not page


# -- topology ------------------------------------------------------------------------------


def system(feed: StudioFeed) -> None:
    """feeder -> market.price.* -> trend -> (mcp:search), as events, heartbeats and spans."""
    for agent in ("feeder", "trend"):
        feed.ingest(heartbeat(agent))
    for _ in range(20):
        feed.ingest(event("market.price.AAPL", {"price": 1}, source="feeder"))
    feed.ingest(spans(*[delivered("market.price.AAPL", "trend") for _ in range(10)]))
    tool = span("tool search.web", "client", "trend", {"mcp.server.name": "search"})
    feed.ingest(spans(tool))


def test_topology_has_nodes_by_kind_and_edges_with_live_rates(feed: StudioFeed) -> None:
    system(feed)
    dashboard = Dashboard(feed)

    nodes = dashboard.topology.nodes.data
    kinds = dict(zip(nodes["name"], nodes["kind"], strict=True))
    assert kinds == {
        "feeder": "agent", "trend": "agent", "market.price.*": "topic", "mcp:search": "mcp",
    }  # fmt: skip
    markers = dict(zip(nodes["kind"], nodes["marker"], strict=True))
    assert markers == {"agent": "circle", "topic": "square", "mcp": "diamond"}

    edges = dashboard.topology.edges.data
    by_edge = {
        (a, b): (rate, label)
        for a, b, rate, label in zip(
            edges["source"], edges["target"], edges["rate"], edges["label"], strict=True
        )
    }
    window = feed.rate_window
    assert by_edge == {
        ("feeder", "market.price.*"): (20 / window, f"{20 / window:.1f}/s"),
        ("market.price.*", "trend"): (10 / window, f"{10 / window:.1f}/s"),
        ("trend", "mcp:search"): (1 / window, f"{1 / window:.1f}/s"),
    }
    widths = dict(zip(edges["source"], edges["width"], strict=True))
    assert widths["feeder"] > widths["market.price.*"] > widths["trend"]


def test_nodes_flow_left_to_right_and_stay_put_when_only_rates_change(feed: StudioFeed) -> None:
    system(feed)
    dashboard = Dashboard(feed)
    topology = dashboard.topology
    x = dict(zip(topology.nodes.data["name"], topology.nodes.data["x"], strict=True))
    assert x["feeder"] < x["market.price.*"] < x["trend"] < x["mcp:search"]

    nodes_before = topology.nodes.data
    for _ in range(30):
        feed.ingest(event("market.price.MSFT", source="feeder"))
    dashboard.refresh()
    assert topology.nodes.data is nodes_before  # same structure: the node source is untouched
    assert max(topology.edges.data["rate"]) == 50 / feed.rate_window

    feed.ingest(event("orders.new.AAPL", source="trend"))
    dashboard.refresh()
    assert "orders.new.*" in topology.nodes.data["name"]
    assert topology.positions["feeder"] == (x["feeder"], 0.0)


def test_layered_layout_is_deterministic_and_cuts_cycles() -> None:
    nodes = {"client": "agent", "req": "topic", "server": "agent", "rep": "topic", "x": "agent"}
    edges = [("client", "req"), ("req", "server"), ("server", "rep"), ("rep", "client")]

    positions = layered_layout(nodes, edges)
    assert [positions[n][0] for n in ("client", "req", "server", "rep")] == [0, 1, 2, 3]
    assert positions["x"][0] == 0  # no edges: the first layer
    assert {positions["client"][1], positions["x"][1]} == {0.5, -0.5}
    assert layered_layout(dict(reversed(nodes.items())), reversed(edges)) == positions


# -- QoS -----------------------------------------------------------------------------------


def test_qos_streams_only_new_history_points_within_the_history_length(feed: StudioFeed) -> None:
    start = int(time.time()) - 400
    for n in range(feed.history.maxlen):
        feed.history.append({"t": start + n, "events": n, "p50_ms": 1.0, "p99_ms": 5.0 + n})
    dashboard = Dashboard(feed)
    history = dashboard.qos.history
    assert len(history.data["t"]) == feed.history.maxlen
    assert history.data["t"][0] == start * 1000  # milliseconds, for the datetime axis

    feed.history.append({"t": start + 400, "events": 7, "p50_ms": 2.0, "p99_ms": 3.0})
    dashboard.refresh()
    dashboard.refresh()
    assert len(history.data["t"]) == feed.history.maxlen
    assert (history.data["events"][-1], history.data["p50_ms"][-1]) == (7, 2.0)
    assert history.data["p99_ms"][-1] == 3.0
    assert history.data["t"][0] == (start + 1) * 1000


def test_delivery_table_shows_delivered_dropped_and_lost_per_agent(feed: StudioFeed) -> None:
    feed.ingest(heartbeat("fast", handled=95, dropped=4, lost=1))
    feed.ingest(heartbeat("slow", handled=0))
    dashboard = Dashboard(feed)

    rows = dashboard.qos.delivery.value.set_index("agent").to_dict("index")
    assert rows["fast"] == {"delivered": 95, "dropped": 4, "lost": 1, "loss %": 5.0}
    assert rows["slow"] == {"delivered": 0, "dropped": 0, "lost": 0, "loss %": 0.0}


# -- live ----------------------------------------------------------------------------------


class Ticker(Agent):
    async def run(self, ctx: Any) -> None:
        n = 0
        while True:
            n += 1
            await ctx.emit("demo.tick.a", {"n": n})
            await asyncio.sleep(0.01)  # the workload's pace


class Counter(Agent):
    @on_event("demo.tick.*")
    async def count(self, event: Envelope, ctx: Any) -> None:
        pass


async def test_a_live_runtime_fills_every_part(rt: Runtime) -> None:
    feed = StudioFeed()
    await feed.attach(rt)
    await rt.start(Ticker("ticker"), Counter("counter"))
    dashboard = Dashboard(feed)

    async def refreshed_until(condition: Any, timeout: float = 5.0) -> None:
        def check() -> bool:
            dashboard.refresh()
            return condition()

        await wait_until(check, timeout)

    await refreshed_until(lambda: "demo.tick.a" in topics(dashboard))
    await refreshed_until(lambda: {"ticker", "counter"} <= set(dashboard.agents.table.value.index))
    await refreshed_until(lambda: "counter" in dashboard.topology.edges.data["target"], timeout=10)
    assert dashboard.agents.table.value.loc["ticker", "status"] == "running"
    assert "connected" in dashboard.header.connection.object
    assert {"ticker", "demo.tick.*", "counter"} <= set(dashboard.topology.nodes.data["name"])
    assert feed.observer_id not in dashboard.topology.nodes.data["name"]
    await refreshed_until(lambda: len(dashboard.qos.history.data["t"]) > 0)
    await feed.aclose()


async def test_shown_dashboard_refreshes_itself_on_one_callback(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = StudioFeed()
    await feed.attach(rt)
    dashboard = Dashboard(feed, refresh_ms=20)
    started: list[Any] = []
    add = pn.state.add_periodic_callback

    def counted(callback: Any, **options: Any) -> Any:
        started.append(options)
        return add(callback, **options)

    monkeypatch.setattr(pn.state, "add_periodic_callback", counted)
    assert not dashboard.running

    dashboard.__panel__()
    dashboard.__panel__()  # shown twice: still one callback
    assert dashboard.running
    assert started == [{"period": 20}]

    await rt.emit("demo.hello", {"hi": 1})
    await wait_until(lambda: "demo.hello" in topics(dashboard))  # no refresh() here
    dashboard.stop()
    assert not dashboard.running
    await feed.aclose()


async def test_default_feed_joins_the_given_runtime(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(feed_module, "_feeds", {})  # this test's loop gets its own feed
    dashboard = Dashboard(runtime=rt)
    assert "connecting" in dashboard.header.connection.object

    await wait_until(lambda: dashboard.feed.runtime is rt)
    dashboard.refresh()
    assert "connected" in dashboard.header.connection.object
    await dashboard.feed.aclose()
