"""The planner: fan-in of analyses, LLM plans with a visible rules fallback, risk
checks, and no flip-flopping without new evidence."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.market_analyst.planner import PlannerAgent, _check_limits, rule_decision
from demo.market_analyst.schemas import (
    Plan,
    PlanDecision,
    Position,
    Risk,
    RiskLimits,
    Sentiment,
    Trend,
    TrendIndicators,
)
from demo.market_analyst.settings import demo_settings
from loom_kernel import Runtime, Subscription, open_runtime
from loom_kernel.config import parse_config
from loom_kernel.errors import ConfigError
from tests.support.openai_server import OpenAIServer, Reply

pytestmark = pytest.mark.timeout(60)
SETTINGS = demo_settings({})
LIMITS = RiskLimits(max_position_notional=100_000, max_leverage=5, max_var_fraction=0.02)


def trend(
    signal: str = "bullish",
    strength: float = 0.9,
    *,
    price: float = 100.0,
    ts: float = 1.0,
    rsi: float = 55,
) -> Trend:
    indicators = TrendIndicators(
        ema_fast=101, ema_slow=99, rsi=rsi, macd=0.5, macd_signal=0.3, macd_hist=0.2, momentum=0.01
    )
    return Trend(
        symbol="AAPL",
        signal=signal,
        strength=strength,
        price=price,
        indicators=indicators,
        ready=True,
        tick_ts=ts,
    )


def position(size: float, *, margin: float) -> Position:
    """A long position held at 100, marked at 100."""
    return Position(
        symbol="AAPL", size=size, entry_price=100, mark_price=100, leverage=1, margin=margin,
        liquidation_price=None, stop_loss=None, take_profit=None, unrealized_pnl=0,
        realized_pnl=0, fees=0, ts=1,
    )  # fmt: skip


def risk(*, allowed: bool = True, ts: float = 1.0, exposure: float = 0.0) -> Risk:
    return Risk(
        symbol="AAPL",
        price=100,
        volatility=0.001,
        var_95=0.002,
        es_95=0.003,
        drawdown=0.01,
        exposure=exposure,
        limits=LIMITS,
        allowed=allowed,
        reason="" if allowed else "max exposure",
        tick_ts=ts,
    )


def sentiment(score: float = 0.5, *, ts: float = 1.0) -> Sentiment:
    label = "positive" if score > 0.05 else "negative" if score < -0.05 else "neutral"
    return Sentiment(
        symbol="AAPL",
        score=score,
        label=label,
        method="vader",
        backend="offline",
        sources=[],
        tick_ts=ts,
    )


# -- the rule planner and the limits, without a bus -----------------------------------


def test_rules_buy_on_a_strong_bullish_trend_with_positive_news() -> None:
    decision = rule_decision(trend(), risk(), sentiment(0.6), SETTINGS)
    assert decision.action == "BUY"
    assert decision.size == pytest.approx(SETTINGS.planner.order_notional / 100)
    assert decision.stop_loss < 100 < decision.take_profit
    assert decision.reasoning.startswith("rules:")


def test_rules_sell_on_a_bearish_trend_and_hold_when_weak() -> None:
    assert rule_decision(trend("bearish"), risk(), sentiment(-0.5), SETTINGS).action == "SELL"
    assert rule_decision(trend("neutral", 0.2), risk(), sentiment(0.0), SETTINGS).action == "HOLD"


def test_rules_hold_when_the_risk_budget_is_spent() -> None:
    decision = rule_decision(trend(), risk(allowed=False), sentiment(0.6), SETTINGS)
    assert decision.action == "HOLD"
    assert "risk budget spent" in decision.reasoning


def test_limits_clamp_leverage_and_size_and_fix_the_exit_levels() -> None:
    wild = PlanDecision(
        action="BUY",
        confidence=0.9,
        size=5_000,
        leverage=20,
        stop_loss=120,
        take_profit=90,
        reasoning="all in",
    )
    checked, checks = _check_limits(wild, trend(), risk(), None, SETTINGS)
    assert checked.leverage == 5
    assert checked.size * 100 == pytest.approx(100_000)
    assert checked.stop_loss < 100 < checked.take_profit
    assert len(checks) == 4


def test_limits_count_the_position_already_held() -> None:
    held = position(900, margin=90_000)
    decision = PlanDecision(action="BUY", confidence=0.9, size=500, reasoning="more")
    checked, _ = _check_limits(decision, trend(), risk(), held, SETTINGS)
    assert checked.size == pytest.approx(100)  # 90,000 held + 10,000 room
    refused, _ = _check_limits(decision, trend(), risk(allowed=False), held, SETTINGS)
    assert refused.action == "HOLD"


# -- the agent on a bus ------------------------------------------------------------


async def start_planner(
    project: Path, demo: dict[str, Any] | None = None, **sections: Any
) -> Runtime:
    raw = {
        "demo": {"planner": {"plan_every_sec": 0, "fan_in_timeout": 0.5, **(demo or {})}},
        **sections,
    }
    rt = await open_runtime(parse_config(raw, path=project / "loom.toml"))
    await rt.start(PlannerAgent())
    return rt


async def evidence(
    rt: Runtime, *, ts: float, signal: str = "bullish", strength: float = 0.9, score: float = 0.6
) -> None:
    """One tick's analyses, sentiment and risk first, the trend (the trigger) last."""
    await rt.emit("analysis.sentiment.AAPL", sentiment(score, ts=ts).model_dump())
    await rt.emit("analysis.risk.AAPL", risk(ts=ts).model_dump())
    await rt.emit("analysis.trend.AAPL", trend(signal, strength, ts=ts).model_dump())


async def next_plan(sub: Subscription) -> Plan:
    return Plan.model_validate((await sub.get(timeout=10)).data)


@pytest.fixture
async def no_llm(project: Path) -> AsyncIterator[Runtime]:
    rt = await start_planner(project, {"llm": None})
    yield rt
    await rt.aclose()


async def test_without_an_llm_the_plan_says_it_came_from_the_rules(no_llm: Runtime) -> None:
    plans = await no_llm.subscribe("plan.*")
    await evidence(no_llm, ts=time.time())
    plan = await next_plan(plans)
    assert (plan.action, plan.source, plan.model) == ("BUY", "rules", None)
    assert plan.fallback_reason == "[demo.planner] llm is unset"
    assert plan.evidence["sentiment"] == 0.6 and plan.evidence["trend"] == "bullish"


async def test_the_same_decision_is_not_repeated_within_the_window(no_llm: Runtime) -> None:
    plans = await no_llm.subscribe("plan.*")
    await evidence(no_llm, ts=time.time())
    assert (await next_plan(plans)).action == "BUY"
    await evidence(no_llm, ts=time.time() + 1)
    again = await next_plan(plans)
    assert again.action == "HOLD"
    assert "duplicate" in again.checks


async def test_recorded_decisions_expire_after_decision_ttl_sec(project: Path) -> None:
    rt = await start_planner(project, {"llm": None, "decision_ttl_sec": 900})
    try:
        plans = await rt.subscribe("plan.*")
        await evidence(rt, ts=time.time())
        assert (await next_plan(plans)).action == "BUY"
        decision = await rt.agents["planner"].ctx.memory.last_decision("AAPL")
        assert decision is not None and decision.expires is not None
        assert decision.expires - decision.created == 900
    finally:
        await rt.aclose()


def test_a_decision_ttl_shorter_than_the_duplicate_window_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"decision_ttl_sec \(60\) must be at least"):
        demo_settings({"planner": {"decision_ttl_sec": 60, "duplicate_window_sec": 300}})
    assert demo_settings({"planner": {"decision_ttl_sec": 60, "duplicate_window_sec": 0}})


async def test_plans_wait_for_the_analyses_of_the_same_tick(no_llm: Runtime) -> None:
    plans = await no_llm.subscribe("plan.*")
    ts = time.time()
    await no_llm.emit("analysis.trend.AAPL", trend(ts=ts).model_dump())  # the trigger first
    await no_llm.emit("analysis.sentiment.AAPL", sentiment(0.9, ts=ts).model_dump())
    await no_llm.emit("analysis.risk.AAPL", risk(ts=ts).model_dump())
    plan = await next_plan(plans)
    assert plan.evidence["sentiment"] == 0.9 and plan.tick_ts == ts


# -- with an LLM (a real local OpenAI-compatible server) -----------------------------


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        yield running


def llm_section(server: OpenAIServer, timeout: float = 5.0) -> dict[str, Any]:
    return {
        "llm": {
            "deepseek": {
                "model": "openai/loom-test",
                "api_base": server.url,
                "timeout_sec": timeout,
            }
        }
    }


LLM_PLAN = {
    "action": "BUY",
    "confidence": 0.8,
    "size": 50,
    "leverage": 2,
    "limit_price": None,
    "stop_loss": 97,
    "take_profit": 108,
    "reasoning": "momentum and good news",
}


async def test_an_llm_plan_says_so_and_passes_the_risk_checks(
    project: Path, server: OpenAIServer
) -> None:
    server.push(Reply(content=json.dumps(LLM_PLAN)))
    rt = await start_planner(project, **llm_section(server))
    try:
        plans = await rt.subscribe("plan.*")
        await evidence(rt, ts=time.time())
        plan = await next_plan(plans)
    finally:
        await rt.aclose()
    assert (plan.source, plan.model, plan.fallback_reason) == ("llm", "openai/loom-test", None)
    assert (plan.action, plan.size, plan.leverage) == ("BUY", 50, 2)
    assert plan.llm_ms > 0
    prompt = server.requests[0]["messages"]
    assert "paper-trading desk" in prompt[0]["content"]
    assert json.loads(prompt[-1]["content"])["symbol"] == "AAPL"


async def test_an_llm_timeout_falls_back_to_rules_visibly(
    project: Path, server: OpenAIServer
) -> None:
    server.push(Reply(content=json.dumps(LLM_PLAN), delay=3))
    rt = await start_planner(project, **llm_section(server, timeout=0.5))
    try:
        plans = await rt.subscribe("plan.*")
        await evidence(rt, ts=time.time())
        plan = await next_plan(plans)
        assert rt.status("planner") == "running"
    finally:
        await rt.aclose()
    assert plan.source == "rules"
    assert "LLM unavailable" in plan.fallback_reason and "did not answer" in plan.fallback_reason


async def test_invalid_llm_json_twice_falls_back_to_rules(
    project: Path, server: OpenAIServer
) -> None:
    server.push(Reply(content="I think you should buy"), Reply(content="{not json"))
    rt = await start_planner(project, **llm_section(server))
    try:
        plans = await rt.subscribe("plan.*")
        await evidence(rt, ts=time.time())
        plan = await next_plan(plans)
    finally:
        await rt.aclose()
    assert plan.source == "rules"
    assert "PlanDecision" in plan.fallback_reason


async def test_a_missing_key_is_a_visible_fallback(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    section = {
        "llm": {"deepseek": {"model": "deepseek/deepseek-chat", "api_key_env": "DEEPSEEK_API_KEY"}}
    }
    rt = await start_planner(project, **section)
    try:
        plans = await rt.subscribe("plan.*")
        await evidence(rt, ts=time.time())
        plan = await next_plan(plans)
    finally:
        await rt.aclose()
    assert plan.source == "rules"
    assert "DEEPSEEK_API_KEY" in plan.fallback_reason


async def test_an_llm_cannot_flip_flop_without_new_evidence(
    project: Path, server: OpenAIServer
) -> None:
    sell = {
        **LLM_PLAN,
        "action": "SELL",
        "stop_loss": 108,
        "take_profit": 97,
        "reasoning": "changed my mind",
    }
    server.push(
        Reply(content=json.dumps(LLM_PLAN)),
        Reply(content=json.dumps(sell)),
        Reply(content=json.dumps(sell)),
    )
    rt = await start_planner(project, {"duplicate_window_sec": 300}, **llm_section(server))
    try:
        plans = await rt.subscribe("plan.*")
        await evidence(rt, ts=time.time(), score=0.3)
        assert (await next_plan(plans)).action == "BUY"
        await evidence(rt, ts=time.time() + 1, score=0.3)  # the same evidence
        refused = await next_plan(plans)
        assert refused.action == "HOLD" and "flip-flop refused" in refused.checks
        assert "no new evidence since BUY" in refused.reasoning
        await evidence(rt, ts=time.time() + 2, score=-0.8)  # the news turned
        assert (await next_plan(plans)).action == "SELL"
    finally:
        await rt.aclose()


def test_rules_close_a_position_against_the_signal_even_without_risk_budget() -> None:
    held = position(300, margin=30_000)
    decision = rule_decision(trend("bearish"), risk(allowed=False), sentiment(-0.5), SETTINGS, held)
    assert (decision.action, decision.size) == ("SELL", 300)
    assert "close the position" in decision.reasoning
