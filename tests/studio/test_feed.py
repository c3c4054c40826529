"""The studio's feed: topic families and observer agents, from real envelopes."""

from __future__ import annotations

import pytest

from loom_studio.feed import StudioFeed, topic_family
from tests.studio.wire import event, heartbeat

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("topic", "family"),
    [
        ("market.price.AAPL", "market.price.*"),
        ("trade.order.BTC-USDT", "trade.order.*"),
        ("market.price.AAPL.spot", "market.price.AAPL.*"),
        ("plan.AAPL", "plan.*"),  # a symbol: an instance of the family
        ("plan.BTC-USDT", "plan.*"),
        ("trade.AAPL", "trade.*"),
        ("user.42", "user.*"),
        ("job.run-7", "job.*"),
        ("news.item", "news.item"),  # two words: one channel
        ("pp.ping", "pp.ping"),
        ("orders.new_order", "orders.new_order"),
        ("tick", "tick"),
    ],
)
def test_topic_family(topic: str, family: str) -> None:
    assert topic_family(topic) == family


def test_two_segment_symbols_share_one_node_and_words_stay_apart() -> None:
    feed = StudioFeed()
    for topic in ("plan.AAPL", "plan.MSFT", "pp.ping", "pp.pong"):
        feed.ingest(event(topic, source="a"))
    assert {n for n, kind in feed.nodes.items() if kind == "topic"} == {
        "plan.*", "pp.ping", "pp.pong",
    }  # fmt: skip


def test_an_observers_heartbeat_and_errors_go_to_the_observers() -> None:
    feed = StudioFeed()
    feed.ingest(heartbeat("terminal-view", observer=True))
    error = {"error": "KeyError", "message": "'x'"}
    feed.ingest(event("loom.agent.terminal-view.error", error, type="error"))
    feed.ingest(heartbeat("data"))
    assert list(feed.agents) == ["data"]
    assert feed.observers["terminal-view"]["last_error"] == "KeyError: 'x'"
    assert "terminal-view" not in feed.nodes
    assert feed.statistics()["observers"] == 1


def test_a_heartbeat_without_the_observer_field_is_an_agent() -> None:
    feed = StudioFeed()
    feed.ingest(heartbeat("old-kernel-agent"))  # heartbeats before the field existed
    assert "old-kernel-agent" in feed.agents and "old-kernel-agent" in feed.nodes


def test_the_studios_own_observer_is_not_reported() -> None:
    feed = StudioFeed()
    feed.ingest(heartbeat(feed.observer_id, observer=True))
    assert feed.agents == {} and feed.observers == {} and feed.nodes == {}
