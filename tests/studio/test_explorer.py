"""The topic explorer on a real bus: the tree, the pattern box, a topic's publishers,
subscribers, schema and last events, and test events that agents really receive."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from loom_kernel import Agent, Runtime, on_event
from loom_studio.explorer import TopicExplorer
from loom_studio.schema_form import SchemaForm
from loom_studio.topic_index import TopicIndex
from loom_studio.topic_tree import tree_rows
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(60)


class Pricer(Agent):
    """Publishes prices; answers quotes; remembers what it got on ``orders.*``."""

    def __init__(self, agent_id: str = "pricer"):
        super().__init__(agent_id)
        self.orders: list[Any] = []

    @on_event("orders.*")
    async def order(self, event, ctx) -> None:
        self.orders.append(event.data)

    @on_event("quote.request")
    async def quote(self, event, ctx) -> None:
        await ctx.reply(event, {"symbol": event.data["symbol"], "price": 101.5})


@pytest.fixture
async def explorer(rt: Runtime) -> AsyncIterator[tuple[TopicExplorer, Pricer]]:
    index = TopicIndex()
    await index.attach(rt)
    agent = Pricer()
    await rt.start(agent)
    yield TopicExplorer(index, runtime=rt), agent


async def publish_prices(rt: Runtime, n: int = 3) -> None:
    for i in range(n):
        await rt.emit("market.price.AAPL", {"symbol": "AAPL", "price": 100.0 + i, "live": True})
        await rt.emit("market.price.MSFT", {"symbol": "MSFT", "price": 50.0 + i})
    await rt.emit("orders.new.AAPL", {"side": "buy", "qty": 3})


def test_tree_counts_every_node_and_marks_the_topics() -> None:
    rows = tree_rows({"a.b.c": 2, "a.b": 1, "a.d": 4}, {"a.d": 2.0})
    assert [(r.path, r.depth, r.count, r.rate, r.is_topic) for r in rows] == [
        ("a", 0, 7, 2.0, False),
        ("a.b", 1, 3, 0.0, True),
        ("a.b.c", 2, 2, 0.0, True),
        ("a.d", 1, 4, 2.0, True),
    ]
    assert rows[2].label == "\u00a0" * 6 + "c"


async def test_tree_shows_topics_seen_with_counts(explorer: Any, rt: Runtime) -> None:
    view, _ = explorer
    await publish_prices(rt)
    await wait_until(lambda: "orders.new.AAPL" in view.index.topics)
    view.refresh()
    frame = view.tree.table.value.set_index("path")
    assert frame.loc["market", "events"] == 6
    assert frame.loc["market.price.AAPL", "events"] == 3
    assert frame.loc["market.price", "kind"] == "prefix"
    assert not any(path.startswith("loom.") for path in frame.index)
    view.tree.reserved.value = True  # Loom's own topics too: heartbeats...
    await wait_until(lambda: "loom.agent.pricer.heartbeat" in view.index.topics)
    view.refresh()
    assert "loom.agent.pricer.heartbeat" in set(view.tree.table.value["path"])


async def test_pattern_box_lists_matching_topics_and_explains_a_bad_pattern(
    explorer: Any, rt: Runtime
) -> None:
    view, _ = explorer
    await publish_prices(rt)
    await wait_until(lambda: "orders.new.AAPL" in view.index.topics)
    view.patterns.pattern.value = "*.*.AAPL"
    view.refresh()
    text = view.patterns.matches.object
    assert "<b>2</b> topics seen match" in text
    assert "market.price.AAPL" in text and "orders.new.AAPL" in text and "MSFT" not in text
    view.patterns.pattern.value = "market.pri*"
    view.refresh()
    assert view.patterns.error.visible
    assert "'*' must be a whole segment" in view.patterns.error.object
    assert "Wildcards" in view.patterns.panel.objects[-1].object  # the rules, on the page


async def test_a_click_on_a_prefix_fills_the_pattern(explorer: Any, rt: Runtime) -> None:
    view, _ = explorer
    await publish_prices(rt)
    await wait_until(lambda: "market.price.MSFT" in view.index.topics)
    view.tree.clicks.click("market.price")
    assert view.patterns.pattern.value == "market.price.*"
    assert "<b>2</b> topics" in view.patterns.matches.object


async def test_a_topic_shows_publishers_subscribers_schema_and_last_events(
    explorer: Any, rt: Runtime
) -> None:
    view, _ = explorer
    await publish_prices(rt)
    await wait_until(lambda: view.index.topics.get("market.price.AAPL", None) is not None)
    await wait_until(lambda: "pricer" in view.index.agents)
    view.tree.clicks.click("market.price.AAPL")
    detail = view.detail
    assert list(detail.publishers.value["source"]) == [rt.client.client_id]
    schema = detail.schema.object
    assert schema["type"] == "object"
    assert schema["properties"]["price"] == {"type": "number"}
    assert schema["properties"]["live"] == {"type": "boolean"}
    newest = detail.events.value["payload"].iloc[0]
    assert newest.startswith('{"symbol": "AAPL", "price": 102.0')
    view.select("orders.new.AAPL")
    view.refresh()
    assert detail.subscribers.value.values.tolist() == [["pricer", "orders.*"]]


async def test_a_click_on_an_event_shows_its_whole_payload(explorer: Any, rt: Runtime) -> None:
    view, _ = explorer
    await publish_prices(rt)
    await wait_until(lambda: view.index.topics.get("market.price.MSFT", None) is not None)
    await wait_until(lambda: view.index.topics["market.price.MSFT"].count == 3)
    view.select("market.price.MSFT")
    detail = view.detail
    assert detail.payload.object == {"data": {"symbol": "MSFT", "price": 52.0}}  # the newest
    assert "newest" in detail.payload_title.object
    oldest = detail.events.value["id"].iloc[-1]
    detail.clicks.click(oldest)
    assert detail.payload.object == {"data": {"symbol": "MSFT", "price": 50.0}}
    assert "clicked" in detail.payload_title.object


async def test_the_form_publishes_a_test_event_the_subscribed_agent_receives(
    explorer: Any, rt: Runtime
) -> None:
    view, agent = explorer
    await publish_prices(rt)
    await wait_until(lambda: "orders.new.AAPL" in view.index.topics)
    view.select("orders.new.AAPL")
    form = view.detail.form
    assert set(form.fields) == {"side", "qty"}
    assert form.fields["qty"].value == 3  # from the last event
    form.fields["qty"].value = 42
    form.fields["side"].value = "sell"
    assert await view.publish()
    await wait_until(lambda: {"side": "sell", "qty": 42} in agent.orders)
    assert "published" in view.detail.status.object


async def test_the_form_sends_a_request_and_shows_the_reply(explorer: Any, rt: Runtime) -> None:
    view, _ = explorer
    await rt.request("quote.request", {"symbol": "AAPL"})
    await wait_until(lambda: "quote.request" in view.index.topics)
    view.select("quote.request")
    view.detail.form.fields["symbol"].value = "MSFT"
    reply = await view.request()
    assert reply == {"symbol": "MSFT", "price": 101.5}
    assert view.detail.reply.object == {"data": reply}
    view.select("market.nothing")  # nobody answers: said so, within the timeout
    assert await asyncio.wait_for(view.request(timeout=0.3), 5) is None
    assert "no reply within 0.3 s" in view.detail.status.object


def test_a_form_field_that_is_not_json_is_named() -> None:
    form = SchemaForm({"type": "object", "properties": {"tags": {"type": "array"}}}, {"tags": [1]})
    assert form.payload() == {"tags": [1]}
    form.fields["tags"].value = "[1,"
    with pytest.raises(ValueError, match="tags \\(optional\\): not JSON"):
        form.payload()
    whole = SchemaForm({"type": "number"}, 3.5)
    assert whole.payload() == 3.5
