"""The paper broker on constructed price paths: fills, margin, exits and the books."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.market_analyst.broker import BrokerEvent, PaperBroker
from demo.market_analyst.schemas import Fill, Order, Tick
from demo.market_analyst.settings import ExecutorSettings

pytestmark = pytest.mark.timeout(60)

NOW = 1_700_000_000.0
FEES = ExecutorSettings(cash=10_000, taker_fee=0.001, maker_fee=0.0005, maintenance_margin=0.005)
NO_FEES = ExecutorSettings(cash=10_000, taker_fee=0, maker_fee=0, maintenance_margin=0.005)


def tick(price: float, spread: float = 0.0, symbol: str = "AAPL") -> Tick:
    return Tick(
        symbol=symbol,
        price=price,
        bid=price - spread / 2,
        ask=price + spread / 2,
        volume=1,
        ts=NOW,
        sent_ts=NOW,
        source="sim",
        seq=0,
    )


def make_broker(config: ExecutorSettings = FEES, *first: Tick) -> PaperBroker:
    broker = PaperBroker(config, max_leverage=5, clock=lambda: NOW)
    for price in first:
        assert broker.on_tick(price) == []
    return broker


def money(value: float):
    return pytest.approx(value, abs=1e-6)


def shape(events: list[BrokerEvent]) -> list[str]:
    """``["Order filled", "Fill", "Position"]``: what happened, in order."""
    return [f"Order {e.status}" if isinstance(e, Order) else type(e).__name__ for e in events]


def assert_books_balance(broker: PaperBroker) -> None:
    account = broker.account()
    assert account.equity == money(account.cash + account.margin_used + account.unrealized_pnl)
    expected = broker.initial_cash + account.realized_pnl - account.fees + account.unrealized_pnl
    assert math.isclose(account.equity, expected, rel_tol=1e-9, abs_tol=1e-6)


# -- market orders -------------------------------------------------------------------


def test_market_buy_fills_at_the_ask_with_the_taker_fee_and_locks_the_margin():
    broker = make_broker(FEES, tick(100, spread=0.2))
    events = broker.place_order("AAPL", "BUY", 10, plan_id="p1", tick_ts=42.0)
    assert shape(events) == ["Order filled", "Fill", "Position"]
    order, fill, position = events
    assert (order.type, order.plan_id, order.tick_ts, order.ts) == ("market", "p1", 42.0, NOW)
    assert (fill.order_id, fill.side, fill.size, fill.price) == (order.id, "BUY", 10, 100.1)
    assert (fill.fee, fill.liquidity) == (money(1.001), "taker")
    assert position.size == 10 and position.entry_price == 100.1
    assert (position.margin, position.leverage) == (money(1001), 1)
    assert position.unrealized_pnl == money(-1.0)  # marked at the mid, 100
    assert position.liquidation_price == money(100.1 * 0.005)
    account = broker.account()
    assert account.cash == money(10_000 - 1001 - 1.001)
    assert account.equity == money(9997.999)
    assert_books_balance(broker)


def test_market_sell_opens_a_short_at_the_bid():
    broker = make_broker(FEES, tick(100, spread=0.2))
    _, fill, position = broker.place_order("AAPL", "SELL", 10, leverage=2)
    assert fill.price == 99.9 and fill.fee == money(0.999)
    assert position.size == -10 and position.margin == money(499.5)
    assert position.liquidation_price == money(99.9 * (1 + 1 / 2 - 0.005))
    assert position.unrealized_pnl == money(-1.0)
    assert broker.account().cash == money(10_000 - 499.5 - 0.999)


def test_closing_realises_pnl_at_the_bid_and_returns_the_margin():
    broker = make_broker(FEES, tick(100, spread=0.2))
    broker.place_order("AAPL", "BUY", 10)
    broker.on_tick(tick(110, spread=0.2))
    assert broker.position("AAPL").unrealized_pnl == money(99.0)
    events = broker.place_order("AAPL", "SELL", 10)
    assert shape(events) == ["Order filled", "Fill", "Position"]
    closed = events[-1]
    assert closed.size == 0 and closed.entry_price is None and closed.closed_reason == "signal"
    assert (closed.margin, closed.unrealized_pnl, closed.liquidation_price) == (0, 0, None)
    assert closed.realized_pnl == money(98.0)  # (109.9 - 100.1) * 10
    assert closed.fees == money(1.001 + 1.099)
    account = broker.account()
    assert account.cash == account.equity == money(10_000 + 98 - 2.1)
    assert_books_balance(broker)


def test_a_short_profits_when_the_price_falls():
    broker = make_broker(NO_FEES, tick(100))
    broker.place_order("AAPL", "SELL", 10, leverage=5)
    broker.on_tick(tick(92.5))
    assert broker.position("AAPL").unrealized_pnl == money(75)
    *_, closed = broker.place_order("AAPL", "BUY", 10)
    assert closed.realized_pnl == money(75)
    assert broker.account().cash == money(10_075)


def test_adding_to_a_position_averages_its_entry():
    broker = make_broker(NO_FEES, tick(100))
    broker.place_order("AAPL", "BUY", 10, leverage=2)
    broker.on_tick(tick(110))
    *_, position = broker.place_order("AAPL", "BUY", 30, leverage=2)
    assert position.size == 40 and position.entry_price == money(107.5)
    assert position.margin == money(500 + 1650) and position.leverage == money(2)
    assert position.unrealized_pnl == money((110 - 107.5) * 40)


def test_adding_at_another_leverage_gives_the_margin_weighted_leverage():
    broker = make_broker(NO_FEES, tick(100))
    broker.place_order("AAPL", "BUY", 10, leverage=2)
    broker.on_tick(tick(110))
    *_, position = broker.place_order("AAPL", "BUY", 30, leverage=4)
    assert position.margin == money(500 + 825)
    assert position.leverage == money(107.5 * 40 / 1325)
    # entry - margin per unit + maintenance: where the margin is down to the maintenance
    assert position.liquidation_price == money(107.5 - 1325 / 40 + 107.5 * 0.005)


def test_a_partial_close_releases_margin_pro_rata_and_keeps_the_entry():
    broker = make_broker(NO_FEES, tick(100))
    broker.place_order("AAPL", "BUY", 10, leverage=4)
    broker.on_tick(tick(120))
    events = broker.place_order("AAPL", "SELL", 4)
    assert shape(events) == ["Order filled", "Fill", "Position"]
    position = events[-1]
    assert position.size == 6 and position.entry_price == 100 and position.closed_reason is None
    assert position.margin == money(150) and position.realized_pnl == money(80)
    assert position.unrealized_pnl == money(120)
    assert broker.account().cash == money(10_000 - 250 + 100 + 80)
    assert broker.account().equity == money(10_200)


def test_partial_closes_that_add_up_in_floats_leave_the_position_flat():
    broker = make_broker(NO_FEES, tick(100))
    broker.place_order("AAPL", "BUY", 0.3)
    broker.place_order("AAPL", "SELL", 0.1)
    *_, closed = broker.place_order("AAPL", "SELL", 0.2)
    assert closed.size == 0 and closed.closed_reason == "signal"
    assert broker.account().margin_used == 0


def test_an_opposite_order_larger_than_the_position_flips_it_in_one_fill():
    broker = make_broker(FEES, tick(100))
    broker.place_order("AAPL", "BUY", 10)
    broker.on_tick(tick(90))
    events = broker.place_order("AAPL", "SELL", 25, leverage=2)
    assert shape(events) == ["Order filled", "Fill", "Position", "Position"]
    _, fill, closed, short = events
    assert (fill.size, fill.price, fill.fee) == (25, 90, money(2.25))
    assert closed.size == 0 and closed.closed_reason == "signal"
    assert closed.realized_pnl == money(-100)
    assert short.size == -15 and short.entry_price == 90 and short.closed_reason is None
    assert (short.margin, short.leverage) == (money(675), 2)
    assert broker.account().cash == money(10_000 - 1 - 1000 + 1000 - 100 - 2.25 - 675)
    assert broker.account().equity == money(10_000 - 100 - 3.25)


def test_fees_of_a_round_trip_are_taker_on_both_notionals():
    broker = make_broker(FEES, tick(250, spread=0.5))
    broker.place_order("AAPL", "BUY", 4, leverage=3)
    *_, closed = broker.place_order("AAPL", "SELL", 4)
    assert closed.fees == money(250.25 * 4 * 0.001 + 249.75 * 4 * 0.001)
    assert closed.realized_pnl == money(-2.0)  # the spread
    assert broker.account().equity == money(10_000 - 2.0 - 2.0)


def test_stop_loss_and_take_profit_are_replaced_only_when_an_add_sets_them():
    broker = make_broker(NO_FEES, tick(100))
    broker.place_order("AAPL", "BUY", 10, stop_loss=95, take_profit=110)
    *_, position = broker.place_order("AAPL", "BUY", 5, stop_loss=97)
    assert (position.stop_loss, position.take_profit) == (97, 110)
    *_, position = broker.place_order("AAPL", "BUY", 5)
    assert (position.stop_loss, position.take_profit) == (97, 110)


# -- limit orders --------------------------------------------------------------------


def test_a_buy_limit_rests_until_the_ask_reaches_it_then_fills_at_the_limit_as_maker():
    broker = make_broker(FEES, tick(100, spread=0.2))
    [order] = broker.place_order("AAPL", "BUY", 10, limit_price=99, plan_id="p7")
    assert (order.status, order.type, order.limit_price) == ("new", "limit", 99)
    assert broker.open_orders() == [order] and broker.account().cash == 10_000
    assert broker.on_tick(tick(99.5, spread=0.2)) == []  # ask 99.6
    events = broker.on_tick(tick(97, spread=0.2))  # gaps through: still the limit price
    assert shape(events) == ["Order filled", "Fill", "Position"]
    filled, fill, position = events
    assert (filled.id, filled.plan_id) == (order.id, "p7")
    assert (fill.price, fill.fee, fill.liquidity) == (99, money(0.495), "maker")
    assert position.entry_price == 99 and position.unrealized_pnl == money(-20)
    assert broker.account().cash == money(10_000 - 990 - 0.495)
    assert broker.open_orders() == []


def test_a_sell_limit_fills_when_the_bid_reaches_it():
    broker = make_broker(FEES, tick(100, spread=0.2))
    broker.place_order("AAPL", "SELL", 5, limit_price=101)
    assert broker.on_tick(tick(101, spread=0.2)) == []  # bid 100.9
    _, fill, position = broker.on_tick(tick(101.1, spread=0.2))  # bid 101.0
    assert fill.price == 101 and fill.liquidity == "maker" and position.size == -5


def test_a_limit_the_quote_already_crosses_fills_at_once_at_the_ask_as_taker():
    broker = make_broker(FEES, tick(100, spread=0.2))
    order, fill, _ = broker.place_order("AAPL", "BUY", 10, limit_price=101)
    assert (order.type, order.status) == ("limit", "filled")
    assert (fill.price, fill.liquidity) == (100.1, "taker")


def test_a_cancelled_limit_never_fills_and_cannot_be_cancelled_twice():
    broker = make_broker(FEES, tick(100))
    [order] = broker.place_order("AAPL", "BUY", 10, limit_price=99)
    [cancelled] = broker.cancel_order(order.id)
    assert (cancelled.id, cancelled.status) == (order.id, "cancelled")
    assert broker.on_tick(tick(98)) == []
    with pytest.raises(LookupError, match="no resting order"):
        broker.cancel_order(order.id)


def test_a_resting_limit_is_cancelled_when_its_margin_no_longer_fits():
    broker = make_broker(FEES, tick(100), tick(50, symbol="MSFT"))
    [order] = broker.place_order("AAPL", "BUY", 90, limit_price=99.5)
    broker.place_order("MSFT", "BUY", 100)  # 5,000 of the 10,000
    [cancelled] = broker.on_tick(tick(99))
    assert (cancelled.id, cancelled.status) == (order.id, "cancelled")
    assert cancelled.reason.startswith("insufficient free margin")
    assert broker.position("AAPL") is None


def test_a_limit_order_whose_margin_does_not_fit_is_rejected_when_placed():
    broker = make_broker(FEES, tick(100))
    [order] = broker.place_order("AAPL", "BUY", 200, limit_price=99)
    assert order.status == "rejected" and "insufficient free margin" in order.reason
    assert broker.open_orders() == []


# -- stop loss, take profit, liquidation ---------------------------------------------


def long_with_exits(config: ExecutorSettings = NO_FEES, leverage: float = 1) -> PaperBroker:
    broker = make_broker(config, tick(100))
    broker.place_order("AAPL", "BUY", 10, leverage=leverage, stop_loss=95, take_profit=110)
    return broker


def test_a_long_stop_fills_at_the_stop_when_the_bid_touches_it():
    broker = long_with_exits()
    assert broker.on_tick(tick(96, spread=0.2)) == []
    events = broker.on_tick(tick(95.1, spread=0.2))  # bid 95.0
    assert shape(events) == ["Order filled", "Fill", "Position"]
    order, fill, position = events
    assert (order.side, order.type, order.reason, order.plan_id) == (
        "SELL",
        "market",
        "stop_loss",
        None,
    )
    assert (fill.price, fill.size, fill.liquidity) == (money(95.0), 10, "taker")
    assert position.size == 0 and position.closed_reason == "stop_loss"
    assert (position.stop_loss, position.take_profit) == (None, None)
    assert position.realized_pnl == money(-50)


def test_a_long_stop_gapped_through_fills_at_the_worse_bid():
    broker = long_with_exits()
    _, fill, position = broker.on_tick(tick(90, spread=0.2))
    assert fill.price == money(89.9) and position.realized_pnl == money(-101)
    assert position.closed_reason == "stop_loss"


def test_a_long_take_profit_fills_at_the_bid_better_on_a_gap():
    touched = long_with_exits()
    _, fill, position = touched.on_tick(tick(110.1, spread=0.2))
    assert fill.price == money(110.0) and position.closed_reason == "take_profit"
    gapped = long_with_exits()
    _, fill, position = gapped.on_tick(tick(115, spread=0.2))
    assert fill.price == money(114.9) and position.realized_pnl == money(149)


def test_a_short_stop_and_take_profit_fill_at_the_ask():
    stopped = make_broker(NO_FEES, tick(100))
    stopped.place_order("AAPL", "SELL", 10, stop_loss=105, take_profit=90)
    assert stopped.on_tick(tick(104.8, spread=0.2)) == []
    order, fill, position = stopped.on_tick(tick(104.9, spread=0.2))  # ask 105.0
    assert order.side == "BUY" and fill.price == money(105.0)
    assert position.closed_reason == "stop_loss" and position.realized_pnl == money(-50)
    profited = make_broker(NO_FEES, tick(100))
    profited.place_order("AAPL", "SELL", 10, stop_loss=105, take_profit=90)
    _, fill, position = profited.on_tick(tick(89.9, spread=0.2))  # ask 90.0
    assert fill.price == money(90.0) and position.closed_reason == "take_profit"


def test_exits_wait_for_a_tick_after_the_fill():
    broker = make_broker(NO_FEES, tick(100, spread=0.2))
    broker.place_order("AAPL", "BUY", 10, limit_price=99, stop_loss=98)
    # this tick fills the limit, and its bid is already past the stop: the stop waits
    events = broker.on_tick(tick(97, spread=0.2))
    assert shape(events) == ["Order filled", "Fill", "Position"]
    _, fill, position = broker.on_tick(tick(97, spread=0.2))
    assert fill.price == money(96.9) and position.closed_reason == "stop_loss"


def test_a_long_is_liquidated_at_its_liquidation_price_and_loses_its_margin():
    broker = make_broker(FEES, tick(100))
    *_, position = broker.place_order("AAPL", "BUY", 10, leverage=5)
    assert position.liquidation_price == money(100 * (1 - 1 / 5 + 0.005))  # 80.5
    assert broker.account().cash == money(10_000 - 200 - 1)
    assert broker.on_tick(tick(80.6)) == []
    events = broker.on_tick(tick(80.5))
    assert shape(events) == ["Order filled", "Fill", "Position"]
    order, fill, closed = events
    assert (order.reason, fill.price, fill.liquidity) == ("liquidation", money(80.5), "taker")
    assert fill.fee == money(100 * 10 * 0.005)  # the maintenance margin left over
    assert closed.closed_reason == "liquidation" and closed.size == 0
    assert closed.realized_pnl == money(-195) and closed.fees == money(1 + 5)
    assert broker.account().cash == broker.account().equity == money(10_000 - 200 - 1)
    assert_books_balance(broker)


def test_a_gap_past_the_liquidation_price_still_closes_at_it():
    broker = make_broker(FEES, tick(100))
    broker.place_order("AAPL", "BUY", 10, leverage=5)
    _, fill, closed = broker.on_tick(tick(60))
    assert fill.price == money(80.5) and closed.realized_pnl == money(-195)
    assert broker.account().equity == money(10_000 - 200 - 1)


def test_a_short_is_liquidated_when_the_mark_rises_to_its_liquidation_price():
    broker = make_broker(FEES, tick(100))
    *_, position = broker.place_order("AAPL", "SELL", 10, leverage=5)
    assert position.liquidation_price == money(100 * (1 + 1 / 5 - 0.005))  # 119.5
    assert broker.on_tick(tick(119.4)) == []
    _, fill, closed = broker.on_tick(tick(130))
    assert fill.price == money(119.5) and closed.closed_reason == "liquidation"
    assert closed.realized_pnl == money(-195)
    assert broker.account().equity == money(10_000 - 200 - 1)


def test_a_gap_through_the_stop_and_the_liquidation_price_liquidates():
    broker = long_with_exits(leverage=5)  # stop 95, liquidation 80.5
    *_, closed = broker.on_tick(tick(70))
    assert closed.closed_reason == "liquidation"


def test_a_stop_above_the_liquidation_price_fires_first():
    broker = make_broker(NO_FEES, tick(100))
    broker.place_order("AAPL", "BUY", 10, leverage=5, stop_loss=85)
    _, fill, closed = broker.on_tick(tick(84))
    assert closed.closed_reason == "stop_loss" and fill.price == 84


def test_the_liquidation_price_follows_the_averaged_entry():
    broker = make_broker(NO_FEES, tick(100))
    broker.place_order("AAPL", "BUY", 10, leverage=5)
    broker.on_tick(tick(120))
    *_, position = broker.place_order("AAPL", "BUY", 10, leverage=5)
    assert position.liquidation_price == money(110 * (1 - 1 / 5 + 0.005))


def test_ticks_of_another_symbol_leave_a_position_alone():
    broker = long_with_exits()
    assert broker.on_tick(tick(50, symbol="MSFT")) == []
    assert broker.position("AAPL").size == 10


# -- margin and rejections -----------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "side", "size", "options", "reason"),
    [
        ("AAPL", "BUY", 0, {}, "size 0 must be a positive number of units"),
        ("AAPL", "SELL", -3, {}, "size -3 must be a positive number of units"),
        ("AAPL", "BUY", math.nan, {}, "size nan must be a positive number of units"),
        ("GOOG", "BUY", 1, {}, "no price for GOOG yet: orders wait for its first tick"),
        ("AAPL", "BUY", 1, {"leverage": 6}, "leverage 6x is outside 1x..5x (max_leverage)"),
        ("AAPL", "BUY", 1, {"leverage": 0.5}, "leverage 0.5x is outside 1x..5x"),
        ("AAPL", "BUY", 1, {"limit_price": 0}, "limit_price 0 must be a positive price"),
        ("AAPL", "BUY", 1, {"stop_loss": 101}, "stop_loss 101 must be below the BUY price 100.1"),
        ("AAPL", "BUY", 1, {"take_profit": 100}, "take_profit 100 must be above the BUY price"),
        ("AAPL", "SELL", 1, {"stop_loss": 99}, "stop_loss 99 must be above the SELL price 99.9"),
        ("AAPL", "SELL", 1, {"take_profit": 101}, "take_profit 101 must be below the SELL"),
        ("AAPL", "BUY", 1, {"limit_price": 99, "stop_loss": 99.5}, "stop_loss 99.5 must be below"),
        (
            "AAPL",
            "BUY",
            200,
            {},
            "insufficient free margin: BUY 200 AAPL at 100.1 with 1x needs 20,040.02 "
            "(margin 20,020.00 + fee 20.02), 10,000.00 is free",
        ),
    ],
)
def test_orders_are_rejected_with_a_reason_and_change_nothing(symbol, side, size, options, reason):
    broker = make_broker(FEES, tick(100, spread=0.2))
    before = broker.account()
    [order] = broker.place_order(symbol, side, size, plan_id="p9", **options)
    assert (order.status, order.plan_id, order.symbol) == ("rejected", "p9", symbol)
    assert order.reason.startswith(reason)
    assert order.model_dump()["reason"] == order.reason  # publishable as it is
    assert broker.account() == before
    assert broker.positions() == [] and broker.open_orders() == []


def test_leverage_makes_the_same_order_fit():
    broker = make_broker(FEES, tick(100, spread=0.2))
    *_, position = broker.place_order("AAPL", "BUY", 200, leverage=5)
    assert position.margin == money(20_020 / 5)


def test_closing_needs_no_margin_even_with_no_cash_left():
    broker = make_broker(NO_FEES, tick(100))
    broker.place_order("AAPL", "BUY", 100)
    assert broker.account().cash == 0
    broker.on_tick(tick(60))
    *_, closed = broker.place_order("AAPL", "SELL", 100)
    assert closed.realized_pnl == money(-4000) and broker.account().cash == money(6000)


def test_a_flip_may_use_the_margin_it_releases_but_no_more():
    broker = make_broker(NO_FEES, tick(100))
    broker.place_order("AAPL", "BUY", 90)  # 9,000 locked, 1,000 free
    [rejected] = broker.place_order("AAPL", "SELL", 200)  # the short 110 needs 11,000
    assert rejected.status == "rejected" and "10,000.00 is free" in rejected.reason
    *_, short = broker.place_order("AAPL", "SELL", 180)
    assert short.size == -90 and broker.account().cash == money(1000)


def test_a_maintenance_margin_that_would_liquidate_at_entry_is_refused():
    with pytest.raises(ValueError, match=r"maintenance_margin 0\.25 must be below"):
        PaperBroker(ExecutorSettings(maintenance_margin=0.25), max_leverage=5)
    with pytest.raises(ValueError, match=r"max_leverage 0\.5 must be at least 1"):
        PaperBroker(max_leverage=0.5)


def test_the_account_adds_up_every_symbol():
    broker = make_broker(NO_FEES, tick(100), tick(50, symbol="MSFT"))
    broker.place_order("AAPL", "BUY", 10, leverage=2)
    broker.place_order("MSFT", "SELL", 20, leverage=4)
    broker.place_order("MSFT", "BUY", 5, limit_price=40)
    broker.on_tick(tick(110))
    broker.on_tick(tick(45, symbol="MSFT"))
    account = broker.account()
    assert account.margin_used == money(500 + 250)
    assert account.unrealized_pnl == money(100 + 100)
    assert account.equity == money(10_200)
    portfolio = broker.portfolio()
    assert [p.symbol for p in portfolio.positions] == ["AAPL", "MSFT"]
    assert [o.limit_price for o in portfolio.open_orders] == [40]
    assert broker.quote("MSFT").price == 45 and broker.quote("IBM") is None


# -- properties ----------------------------------------------------------------------

sides = st.sampled_from(["BUY", "SELL"])
steps = st.one_of(
    st.tuples(st.just("tick"), st.floats(50, 150), st.floats(0, 1)),
    st.tuples(st.just("market"), sides, st.floats(0.1, 40), st.floats(1, 5), st.booleans()),
    st.tuples(st.just("limit"), sides, st.floats(0.1, 40), st.floats(-5, 5)),
    st.tuples(st.just("cancel")),
)


def apply(broker: PaperBroker, step: tuple) -> list[BrokerEvent]:
    quote = broker.quote("AAPL")
    match step:
        case ("tick", price, spread):
            return broker.on_tick(tick(price, spread))
        case ("market", side, size, leverage, exits):
            sign = 1 if side == "BUY" else -1
            levels = {"stop_loss": quote.price * (1 - sign * 0.03)} if exits else {}
            if exits:
                levels["take_profit"] = quote.price * (1 + sign * 0.05)
            return broker.place_order("AAPL", side, size, leverage=leverage, **levels)
        case ("limit", side, size, offset):
            return broker.place_order("AAPL", side, size, limit_price=quote.price + offset)
        case _:
            orders = broker.open_orders()
            return broker.cancel_order(orders[0].id) if orders else []


@settings(max_examples=200, deadline=None)
@given(st.lists(steps, max_size=40))
def test_equity_is_cash_plus_margin_plus_unrealized_and_only_fees_leak(path):
    """equity = initial cash + realised - fees + unrealised, whatever happens; the fills
    add up to the position and to the fees."""
    broker = make_broker(FEES, tick(100, spread=0.1))
    units = fees = 0.0
    for step in path:
        for event in apply(broker, step):
            if isinstance(event, Fill):
                units += event.size if event.side == "BUY" else -event.size
                fees += event.fee
        assert_books_balance(broker)
        account = broker.account()
        assert math.isclose(account.fees, fees, rel_tol=1e-9, abs_tol=1e-9)
        position = broker.position("AAPL")
        if position is None:
            continue
        assert math.isclose(position.size, units, abs_tol=1e-6)
        assert position.margin >= -1e-9
        if position.size:
            notional = position.entry_price * abs(position.size)
            assert position.margin == pytest.approx(notional / position.leverage)


@settings(max_examples=100, deadline=None)
@given(sides, st.floats(0.01, 50), st.floats(1, 5), st.floats(1, 150))
def test_a_round_trip_at_an_unchanged_price_loses_exactly_the_fees(side, size, leverage, price):
    broker = make_broker(FEES, tick(price))
    broker.place_order("AAPL", side, size, leverage=leverage)
    *_, closed = broker.place_order("AAPL", "SELL" if side == "BUY" else "BUY", size)
    assert closed.size == 0 and closed.realized_pnl == 0
    assert closed.fees == pytest.approx(2 * price * size * 0.001)
    assert broker.account().equity == pytest.approx(10_000 - closed.fees)
