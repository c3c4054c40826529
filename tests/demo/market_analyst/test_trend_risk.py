"""The trend and risk agents on a real runtime: ticks in, ``Trend`` and ``Risk`` out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from demo.market_analyst.risk import RiskAgent, check_limits
from demo.market_analyst.schemas import Position, Risk, RiskLimits, Tick, Trend
from demo.market_analyst.trend import TrendAgent
from loom_kernel import Envelope, Runtime, Subscription, open_runtime
from loom_kernel.errors import LoomError
from tests.conftest import WAIT, wait_until

pytestmark = pytest.mark.timeout(60)

CONFIG = """
[runtime]
heartbeat_interval = 0.2

[demo.trend]
ema_fast = 3
ema_slow = 6
macd_signal = 3
rsi_period = 4
momentum_window = 2

[demo.risk]
window = 10
max_position_notional = 50000.0
max_var_fraction = 0.01

[demo.executor]
cash = 100000.0
"""
SLOW = 6  # ticks until the trend is ready, with CONFIG
LIMITS = RiskLimits(max_position_notional=50_000, max_leverage=5, max_var_fraction=0.01)


@pytest.fixture
async def runtime(project: Path) -> AsyncIterator[Runtime]:
    (project / "loom.toml").write_text(CONFIG)
    async with open_runtime(project / "loom.toml") as rt:
        yield rt


@pytest.fixture
async def agents(runtime: Runtime) -> tuple[TrendAgent, RiskAgent]:
    trend, risk = TrendAgent(), RiskAgent()
    await runtime.start(trend, risk)
    return trend, risk


def tick(price: float, seq: int, symbol: str = "AAPL") -> dict:
    return Tick(
        symbol=symbol,
        price=price,
        bid=price * 0.9999,
        ask=price * 1.0001,
        volume=10.0,
        ts=1_000.0 + seq,
        sent_ts=2_000.0 + seq,
        source="sim",
        seq=seq,
    ).model_dump()


def position(size: float, mark: float, symbol: str = "AAPL") -> dict:
    return Position(
        symbol=symbol,
        size=size,
        entry_price=mark if size else None,
        mark_price=mark,
        leverage=1.0,
        margin=abs(size) * mark,
        liquidation_price=None,
        stop_loss=None,
        take_profit=None,
        unrealized_pnl=0.0,
        realized_pnl=0.0,
        fees=0.0,
        ts=1.0,
    ).model_dump()


async def emit_ticks(rt: Runtime, prices: list[float], first_seq: int = 0, symbol: str = "AAPL"):
    for seq, price in enumerate(prices, start=first_seq):
        await rt.emit(f"market.price.{symbol}", tick(price, seq, symbol))


async def collect(sub: Subscription, count: int) -> list[Envelope]:
    return [await sub.get(timeout=WAIT) for _ in range(count)]


async def risks_after(rt: Runtime, prices: list[float], first_seq: int) -> list[Risk]:
    async with await rt.subscribe("analysis.risk.AAPL") as sub:
        await emit_ticks(rt, prices, first_seq)
        return [Risk.model_validate(e.data) for e in await collect(sub, len(prices))]


async def test_every_tick_gets_a_trend_and_a_risk_carrying_its_sent_ts(runtime: Runtime, agents):
    sub = await runtime.subscribe("analysis.*")
    prices = [100.0, 101.0, 100.5, 102.0]
    await emit_ticks(runtime, prices)
    await emit_ticks(runtime, [50.0, 51.0], symbol="MSFT")
    events = await collect(sub, 2 * (len(prices) + 2))

    trends = [Trend.model_validate(e.data) for e in events if e.topic.startswith("analysis.trend")]
    risks = [Risk.model_validate(e.data) for e in events if e.topic.startswith("analysis.risk")]
    assert {e.source for e in events} == {"trend", "risk"}
    assert [(t.symbol, t.tick_ts, t.price) for t in trends] == [
        *(("AAPL", 2_000.0 + i, p) for i, p in enumerate(prices)),
        ("MSFT", 2_000.0, 50.0),
        ("MSFT", 2_001.0, 51.0),
    ]
    assert [(r.symbol, r.tick_ts) for r in risks] == [(t.symbol, t.tick_ts) for t in trends]
    assert all(e.topic.endswith(f".{e.data['symbol']}") for e in events)
    assert risks[3].drawdown == 0.0  # AAPL at its peak
    assert risks[2].drawdown == pytest.approx(1 - 100.5 / 101.0)
    assert risks[4].volatility == 0.0  # MSFT's first tick: its own window, no return yet
    assert all(r.limits == LIMITS and r.allowed and r.exposure == 0.0 for r in risks)


async def test_ready_flips_once_the_slow_ema_has_seen_enough_ticks(runtime: Runtime, agents):
    sub = await runtime.subscribe("analysis.trend.AAPL")
    prices = [100.0 * 1.01**i for i in range(SLOW + 4)]
    await emit_ticks(runtime, prices)
    trends = [Trend.model_validate(e.data) for e in await collect(sub, len(prices))]
    assert [t.ready for t in trends] == [False] * (SLOW - 1) + [True] * 5
    assert {(t.signal, t.strength) for t in trends[: SLOW - 1]} == {("neutral", 0.0)}
    assert trends[-1].signal == "bullish"
    assert trends[-1].indicators.ema_fast > trends[-1].indicators.ema_slow


async def test_a_position_sets_exposure_and_the_notional_limit_blocks(runtime: Runtime, agents):
    _, risk_agent = agents
    assert all(r.allowed for r in await risks_after(runtime, [100.0, 100.1], 0))

    await runtime.emit("trade.position.AAPL", position(-500.0, 110.0))  # short 55,000
    await wait_until(lambda: risk_agent.exposure.get("AAPL") == -55_000.0)
    [blocked] = await risks_after(runtime, [100.2], 2)
    assert blocked.exposure == -55_000.0
    assert not blocked.allowed
    assert "max_position_notional" in blocked.reason

    await runtime.emit("trade.position.AAPL", position(0.0, 100.2))
    await wait_until(lambda: risk_agent.exposure.get("AAPL") == 0.0)
    [cleared] = await risks_after(runtime, [100.3], 3)
    assert (cleared.exposure, cleared.allowed, cleared.reason) == (0.0, True, "")


async def test_the_var_budget_blocks_a_position_in_a_volatile_market(runtime: Runtime, agents):
    _, risk_agent = agents
    await runtime.emit("trade.position.AAPL", position(400.0, 100.0))  # 40,000 < 50,000
    await wait_until(lambda: risk_agent.exposure.get("AAPL") == 40_000.0)
    calm = await risks_after(runtime, [100.0, 100.01, 100.02], 0)
    assert calm[-1].allowed  # 40,000 * tiny VaR is far below 1 % of 100,000
    swings = await risks_after(runtime, [95.0, 100.0, 95.0, 100.0], 3)
    # A 5 % one-tick loss: 40,000 * 0.05 = 2,000 > 1,000
    assert swings[-1].var_95 == pytest.approx(0.05, rel=0.02)
    assert not swings[-1].allowed
    assert "max_var_fraction" in swings[-1].reason


async def test_a_bad_trend_setting_fails_the_start(project: Path):
    (project / "loom.toml").write_text("[demo.trend]\nema_fast = 30\nema_slow = 26\n")
    async with open_runtime(project / "loom.toml") as rt:
        with pytest.raises(LoomError, match=r"demo.trend: ema_fast \(30\) must be below ema_slow"):
            await rt.start(TrendAgent())


def test_check_limits_counts_a_short_by_its_size_and_allows_within_budget():
    assert check_limits(0.0, 0.5, LIMITS, equity=100_000) == (True, "")
    assert check_limits(-49_999.0, 0.0002, LIMITS, equity=100_000) == (True, "")
    allowed, reason = check_limits(-50_000.0, 0.0, LIMITS, equity=100_000)
    assert not allowed and "50,000.00" in reason
    allowed, reason = check_limits(20_000.0, 0.051, LIMITS, equity=100_000)
    assert not allowed and "1,020.00" in reason  # 20,000 * 5.1 % > 1,000
