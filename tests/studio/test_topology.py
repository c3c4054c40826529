"""The dashboard's topology: nodes by kind, edges with live rates, a layout that flows left
to right, and rate labels that never sit on one another."""

from __future__ import annotations

import itertools

import pytest

from loom_studio.dashboard import Dashboard
from loom_studio.feed import StudioFeed
from loom_studio.topology import CHAR_PX, LINE_PX, MAX_LABELS, layered_layout, place_labels
from tests.studio.wire import delivered, event, heartbeat, span, spans

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def feed() -> StudioFeed:
    return StudioFeed()


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


def test_one_node_per_two_segment_family(feed: StudioFeed) -> None:
    for symbol in ("AAPL", "BTC-USDT", "MSFT"):
        feed.ingest(event(f"plan.{symbol}", source="planner"))
        feed.ingest(event(f"trade.fill.{symbol}", source="executor"))
    feed.ingest(spans(delivered("plan.AAPL", "executor"), delivered("plan.MSFT", "executor")))
    dashboard = Dashboard(feed)

    names = set(dashboard.topology.nodes.data["name"])
    assert names == {"planner", "plan.*", "executor", "trade.fill.*"}
    edges = dashboard.topology.edges.data
    assert ("plan.*", "executor") in zip(edges["source"], edges["target"], strict=True)


def test_observer_agents_are_neither_nodes_nor_running_agents(feed: StudioFeed) -> None:
    system(feed)
    feed.ingest(heartbeat("terminal-view", observer=True, handled=40))
    feed.ingest(heartbeat("studio-4242"))  # another studio's observer, from an older kernel
    dashboard = Dashboard(feed)

    assert "terminal-view" not in dashboard.topology.nodes.data["name"]
    assert "studio-4242" not in dashboard.topology.nodes.data["name"]
    assert dashboard.header.running.value == 2
    assert list(dashboard.agents.table.value.index) == ["feeder", "trend"]
    assert "terminal-view <i>running</i>" in dashboard.agents.observers.object
    assert dashboard.agents.observers.visible


def test_an_observer_that_publishes_is_in_the_flow(feed: StudioFeed) -> None:
    feed.ingest(heartbeat("relay", observer=True))
    feed.ingest(event("alerts.raised", source="relay"))
    dashboard = Dashboard(feed)
    assert {"relay", "alerts.raised"} <= set(dashboard.topology.nodes.data["name"])


def test_layered_layout_is_deterministic_and_cuts_cycles() -> None:
    nodes = {"client": "agent", "req": "topic", "server": "agent", "rep": "topic", "x": "agent"}
    edges = [("client", "req"), ("req", "server"), ("server", "rep"), ("rep", "client")]

    positions = layered_layout(nodes, edges)
    assert [positions[n][0] for n in ("client", "req", "server", "rep")] == [0, 1, 2, 3]
    assert positions["x"][0] == 0  # no edges: the first layer
    assert {positions["client"][1], positions["x"][1]} == {0.5, -0.5}
    assert layered_layout(dict(reversed(nodes.items())), reversed(edges)) == positions


# -- rate labels -----------------------------------------------------------------------------


def label_boxes(
    positions: dict[str, tuple[float, float]],
    edges: list[tuple[str, str, str]],
    places: list[tuple[float, float] | None],
    frame: tuple[float, float],
) -> list[tuple[float, float, float, float]]:
    """Each placed label's box in px (y down), as the figure draws it."""
    xs = [x for x, _ in positions.values()]
    ys = [y for _, y in positions.values()]
    sx = frame[0] / ((max(xs) - min(xs)) * 1.25 or 2)
    sy = frame[1] / ((max(ys) - min(ys)) * 1.25 or 2)
    boxes = []
    for (_, _, text), place in zip(edges, places, strict=True):
        if place:
            px, py = place[0] * sx, -place[1] * sy
            half = len(text) * CHAR_PX / 2
            boxes.append((px - half, py - 3 - LINE_PX, px + half, py - 3))
    return boxes


def test_labels_of_a_dense_fan_in_do_not_overlap() -> None:
    # six producers, each into three topics, all consumed by one planner: many edges meet
    nodes = {f"p{i}": "agent" for i in range(6)} | {f"t{i}": "topic" for i in range(3)}
    flows = [(f"p{i}", f"t{j}") for i in range(6) for j in range(3)]
    positions = layered_layout(
        {**nodes, "planner": "agent"}, flows + [(f"t{j}", "planner") for j in range(3)]
    )
    edges = [(f"p{i}", f"t{j}", "44.7/s") for i in range(6) for j in range(3)]
    edges += [(f"t{j}", "planner", "134.2/s") for j in range(3)]
    frame = (700.0, 500.0)
    places = place_labels(positions, edges, frame)

    boxes = label_boxes(positions, edges, places, frame)
    assert 3 <= len(boxes) <= MAX_LABELS
    for a, b in itertools.combinations(boxes, 2):
        assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_the_busiest_edges_get_labels_first() -> None:
    positions = {"a": (0.0, 0.0), "b": (1.0, 0.0)}
    # two labels for one edge's place: the first (the busiest) wins, the other is hover only
    places = place_labels(positions, [("a", "b", "900/s"), ("a", "b", "1.0/s")])
    assert places[0] == (0.5, 0.0)
    assert places[1] is not None and places[1] != places[0]  # further along the same edge
    crowded = place_labels(positions, [("a", "b", "1.0/s")] * 12, (200.0, 100.0))
    assert crowded[0] is not None and None in crowded


def test_an_edge_without_a_rate_has_no_label() -> None:
    assert place_labels({"a": (0.0, 0.0), "b": (1.0, 0.0)}, [("a", "b", "")]) == [None]
