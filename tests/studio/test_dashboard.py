"""The dashboard: a real feed fed real envelopes, refreshed by hand or by its own callback."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import panel as pn
import pytest

from loom_kernel import Agent, Runtime, on_event
from loom_kernel.protocol.envelope import Envelope
from loom_studio import feed as feed_module
from loom_studio.dashboard import Dashboard
from loom_studio.feed import StudioFeed
from tests.conftest import wait_until
from tests.studio.wire import event, heartbeat

pytestmark = pytest.mark.timeout(60)


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


def test_header_says_when_spans_are_lost_on_the_way_to_an_otlp_backend(feed: StudioFeed) -> None:
    otlp = {"endpoint": "http://127.0.0.1:6006/v1/traces", "queued": 0, "exported": 900}
    fine = {"client_id": "rt-1", "tracing": {"otlp": {**otlp, "dropped": 0, "failed": 0}}}
    feed.ingest(event("loom.client.rt-1.stats", fine, source="rt-1", type="stats"))
    dashboard = Dashboard(feed)
    assert not dashboard.header.tracing.visible

    slow = {"client_id": "rt-1", "tracing": {"otlp": {**otlp, "dropped": 120, "failed": 3}}}
    feed.ingest(event("loom.client.rt-1.stats", slow, source="rt-1", type="stats"))
    dashboard.refresh()
    note = dashboard.header.tracing.object
    assert dashboard.header.tracing.visible
    assert "rt-1: 120 span(s) dropped and 3 refused" in note
    assert "http://127.0.0.1:6006/v1/traces" in note and "sample_ratio" in note


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
    # it grows with its rows: none is cut off (the browser test checks the page)
    assert dashboard.qos.delivery.height is None and dashboard.qos.delivery.max_height is None


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


class Watcher(Agent):
    traced = False  # an observer, like the demo's terminal view

    @on_event("demo.tick.*")
    async def watch(self, event: Envelope, ctx: Any) -> None:
        pass


async def test_a_live_observer_is_reported_apart_from_the_agents(rt: Runtime) -> None:
    feed = StudioFeed()
    await feed.attach(rt)
    await rt.start(Ticker("ticker"), Watcher("watcher"))
    dashboard = Dashboard(feed)

    def refreshed() -> bool:
        dashboard.refresh()
        return "watcher" in feed.observers and "ticker" in feed.agents

    await wait_until(refreshed, timeout=10)
    assert "watcher" not in feed.agents
    assert "watcher" not in dashboard.topology.nodes.data["name"]
    assert list(dashboard.agents.table.value.index) == ["ticker"]
    assert "watcher" in dashboard.agents.observers.object
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
