"""The executor on a real runtime: ticks and plans in, orders, fills and positions out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from demo.market_analyst.executor import ExecutorAgent
from demo.market_analyst.schemas import Plan, Tick
from loom_kernel import Envelope, LoomError, Runtime, Subscription, open_runtime
from tests.conftest import WAIT, wait_until

pytestmark = pytest.mark.timeout(60)


class Market:
    """Publishes ticks and plans, and waits until the executor has seen each tick."""

    def __init__(self, rt: Runtime, executor: ExecutorAgent):
        self.rt = rt
        self.executor = executor
        self.seq = 0

    async def tick(self, price: float, spread: float = 0.2, symbol: str = "AAPL") -> None:
        tick = Tick(
            symbol=symbol,
            price=price,
            bid=price - spread / 2,
            ask=price + spread / 2,
            volume=100,
            ts=1000.0 + self.seq,
            sent_ts=1000.0 + self.seq,
            source="replay",
            seq=self.seq,
        )
        self.seq += 1
        await self.rt.emit(f"market.price.{symbol}", tick.model_dump())
        await wait_until(lambda: self.executor.broker.quote(symbol) == tick)

    async def plan(self, plan_id: str, action: str = "BUY", **fields: Any) -> None:
        decision = {
            "symbol": "AAPL",
            "size": 10,
            "leverage": 2,
            "stop_loss": 95 if action == "BUY" else None,
            "take_profit": 110 if action == "BUY" else None,
            **fields,
        }
        plan = Plan(
            id=plan_id,
            action=action,
            confidence=0.8,
            reasoning="a test plan",
            source="rules",
            price=100,
            tick_ts=123.0,
            **decision,
        )
        await self.rt.emit(f"plan.{plan.symbol}", plan.model_dump())


class Trades:
    """What arrives on ``trade.*``, in order."""

    def __init__(self, sub: Subscription):
        self.sub = sub
        self.seen: list[Envelope] = []

    async def wait_for(self, predicate: Callable[[Envelope], bool]) -> Envelope:
        """The first event so far or to come that ``predicate`` accepts."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        index = 0
        while True:
            for event in self.seen[index:]:
                if predicate(event):
                    return event
            index = len(self.seen)
            self.seen.append(await self.sub.get(timeout=max(0.0, deadline - loop.time())))

    def on(self, family: str) -> list[dict[str, Any]]:
        return [e.data for e in self.seen if e.topic.startswith(f"trade.{family}.")]


def closed_by(reason: str) -> Callable[[Envelope], bool]:
    return lambda e: e.topic == "trade.position.AAPL" and e.data["closed_reason"] == reason


def order_of(plan_id: str) -> Callable[[Envelope], bool]:
    return lambda e: e.topic.startswith("trade.order.") and e.data["plan_id"] == plan_id


async def open_desk(rt: Runtime, mark_interval: float = 3600) -> tuple[Market, Trades]:
    trades = Trades(await rt.subscribe("trade.*"))
    executor = ExecutorAgent(mark_interval=mark_interval)
    await rt.start(executor)
    return Market(rt, executor), trades


@pytest.fixture
async def desk(rt: Runtime) -> tuple[Market, Trades]:
    return await open_desk(rt)


async def test_a_buy_plan_publishes_the_filled_order_its_fill_and_the_position(desk):
    market, trades = desk
    await market.tick(100)
    await market.plan("p1")
    await trades.wait_for(lambda e: e.topic == "trade.position.AAPL")
    assert [e.topic for e in trades.seen] == [
        "trade.order.AAPL",
        "trade.fill.AAPL",
        "trade.position.AAPL",
    ]
    [order], [fill], [position] = trades.on("order"), trades.on("fill"), trades.on("position")
    assert (order["status"], order["plan_id"], order["tick_ts"]) == ("filled", "p1", 123.0)
    assert (order["side"], order["type"], order["size"], order["leverage"]) == (
        "BUY",
        "market",
        10,
        2,
    )
    assert (fill["order_id"], fill["price"], fill["liquidity"]) == (order["id"], 100.1, "taker")
    assert fill["fee"] == pytest.approx(100.1 * 10 * 0.0005)
    assert (position["size"], position["entry_price"], position["leverage"]) == (10, 100.1, 2)
    assert (position["stop_loss"], position["take_profit"]) == (95, 110)
    assert position["margin"] == pytest.approx(500.5)


async def test_a_stop_loss_fired_by_later_ticks_publishes_the_closed_position(desk):
    market, trades = desk
    await market.tick(100)
    await market.plan("p1")
    await trades.wait_for(lambda e: e.topic == "trade.position.AAPL")
    await market.tick(97)
    await market.tick(94.9)  # bid 94.8: past the stop at 95
    closed = (await trades.wait_for(closed_by("stop_loss"))).data
    assert closed["size"] == 0 and closed["entry_price"] is None
    assert closed["realized_pnl"] == pytest.approx((94.8 - 100.1) * 10)
    stop_order = trades.on("order")[-1]
    assert (stop_order["side"], stop_order["reason"], stop_order["plan_id"]) == (
        "SELL",
        "stop_loss",
        None,
    )
    assert trades.on("fill")[-1]["price"] == pytest.approx(94.8)


async def test_hold_plans_place_nothing(desk):
    market, trades = desk
    await market.tick(100)
    await market.plan("hold-1", "HOLD", size=0)
    await market.plan("sell-1", "SELL", size=3)
    await trades.wait_for(order_of("sell-1"))  # plans are handled in order
    assert [order["plan_id"] for order in trades.on("order")] == ["sell-1"]


async def test_a_plan_the_broker_refuses_is_published_as_rejected_with_the_reason(desk):
    market, trades = desk
    await market.tick(100)
    await market.plan("too-much", leverage=10)  # [demo.risk] max_leverage is 5
    await market.plan("no-price", symbol="GOOG")
    rejected = (await trades.wait_for(order_of("too-much"))).data
    assert rejected["status"] == "rejected"
    assert rejected["reason"] == "leverage 10x is outside 1x..5x (max_leverage)"
    no_price = await trades.wait_for(order_of("no-price"))
    assert no_price.topic == "trade.order.GOOG"
    assert no_price.data["reason"].startswith("no price for GOOG yet")
    assert trades.on("fill") == [] and trades.on("position") == []


async def test_a_limit_plan_rests_and_fills_when_a_later_tick_crosses_it(desk):
    market, trades = desk
    await market.tick(100)
    await market.plan("lim", limit_price=99, stop_loss=97, take_profit=105)
    new = (await trades.wait_for(order_of("lim"))).data
    assert (new["status"], new["type"], new["limit_price"]) == ("new", "limit", 99)
    await market.tick(98)
    await trades.wait_for(lambda e: e.topic == "trade.position.AAPL")
    assert [o["status"] for o in trades.on("order")] == ["new", "filled"]
    [fill] = trades.on("fill")
    assert (fill["order_id"], fill["price"], fill["liquidity"]) == (new["id"], 99, "maker")


async def test_open_positions_are_published_marked_to_market_between_changes(rt):
    market, trades = await open_desk(rt, mark_interval=0)
    await market.tick(100)
    await market.plan("p1")
    await market.tick(105)
    marked = await trades.wait_for(
        lambda e: e.topic == "trade.position.AAPL" and e.data["mark_price"] == 105
    )
    assert marked.data["unrealized_pnl"] == pytest.approx((105 - 100.1) * 10)
    assert marked.data["closed_reason"] is None


async def test_mark_to_market_updates_are_throttled_per_symbol(desk):
    market, trades = desk  # one mark update an hour at most
    await market.tick(100)
    await market.plan("open")
    for price in (101, 102, 103):
        await market.tick(price)
    await market.plan("close", "SELL")
    await trades.wait_for(closed_by("signal"))
    assert [p["size"] for p in trades.on("position")] == [10, 0]


async def test_the_positions_tool_answers_with_the_account_and_positions(desk, rt):
    market, trades = desk
    await market.tick(100)
    await market.plan("p1")
    await market.plan("lim", "SELL", size=2, limit_price=120)
    await trades.wait_for(order_of("lim"))
    answer = await rt.tool("executor.positions")
    account = answer["account"]
    assert account["margin_used"] == pytest.approx(500.5)
    assert account["cash"] == pytest.approx(1_000_000 - 500.5 - 0.5005)
    assert account["equity"] == pytest.approx(account["cash"] + 500.5 + (100 - 100.1) * 10)
    assert account["realized_pnl"] == 0
    [position] = answer["positions"]
    assert (position["symbol"], position["size"]) == ("AAPL", 10)
    assert [o["limit_price"] for o in answer["open_orders"]] == [120]


async def test_settings_come_from_loom_toml_and_okx_demo_falls_back_to_paper(project: Path):
    config = project / "loom.toml"
    config.write_text(
        config.read_text() + '\n[demo.executor]\ncash = 5000\nexchange = "okx-demo"\n'
    )
    async with open_runtime(config) as rt:
        logs = await rt.subscribe("loom.log.executor")
        market, trades = await open_desk(rt)
        record = await logs.get(timeout=WAIT)
        assert record.data["level"] == "ERROR"
        assert "okx-demo" in record.data["message"] and "paper" in record.data["message"]
        await market.tick(100)
        await market.plan("p1", size=1, leverage=1)
        await trades.wait_for(lambda e: e.topic == "trade.position.AAPL")
        answer = await rt.tool("executor.positions")
        assert answer["account"]["cash"] == pytest.approx(5000 - 100.1 - 100.1 * 0.0005)


async def test_a_plan_of_size_zero_is_rejected_not_dropped(desk):
    market, trades = desk
    await market.tick(100)
    await market.plan("empty", size=0)
    rejected = (await trades.wait_for(order_of("empty"))).data
    assert (rejected["status"], rejected["size"]) == ("rejected", 0)
    assert rejected["reason"] == "size 0 must be a positive number of units"


async def test_a_maintenance_margin_above_one_over_max_leverage_fails_the_start(project: Path):
    config = project / "loom.toml"
    config.write_text(config.read_text() + "\n[demo.risk]\nmax_leverage = 250\n")
    async with open_runtime(config) as rt:
        with pytest.raises(LoomError, match=r"maintenance_margin 0\.005 must be below"):
            await rt.start(ExecutorAgent())
