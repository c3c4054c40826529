"""The Market Analyst end to end, offline: six agents, one trace per workflow, limits
respected, and visible degradation when the search server or the LLM fails."""

from __future__ import annotations

import json
import tomllib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.market_analyst.app import PROJECT, agents
from demo.market_analyst.schemas import Order, Plan, Position, Sentiment
from loom_kernel import Runtime, Subscription, open_runtime
from loom_kernel.config import parse_config
from loom_kernel.protocol.spans import parse_traceparent
from tests.conftest import REPO, wait_until
from tests.support.openai_server import OpenAIServer, Reply

pytestmark = [pytest.mark.timeout(90), pytest.mark.multiprocess]

BUY = {
    "action": "BUY", "confidence": 0.9, "size": 1000, "leverage": 3, "limit_price": None,
    "stop_loss": None, "take_profit": None, "reasoning": "test plan: always buy",
}  # fmt: skip


def demo_config(project: Path, server: OpenAIServer | None = None, **demo: Any) -> dict[str, Any]:
    """The demo's own loom.toml, made fast and local for a test."""
    raw = tomllib.loads((PROJECT / "loom.toml").read_text(encoding="utf-8"))
    raw["mcp"]["web-search"]["cwd"] = str(REPO)
    raw["runtime"] = {"heartbeat_interval": 0.2}
    if server is None:
        raw.pop("llm")
    else:
        raw["llm"]["deepseek"] = {
            "model": "openai/loom-test",
            "api_base": server.url,
            "timeout_sec": 5,
        }
    settings: dict[str, Any] = {
        "symbols": ["AAPL", "BTC-USDT"],
        "data": {"ticks_per_second": 10},
        "trend": {
            "ema_fast": 2,
            "ema_slow": 3,
            "macd_signal": 2,
            "rsi_period": 2,
            "momentum_window": 2,
        },
        "planner": {"plan_every_sec": 0.3, "duplicate_window_sec": 0, "fan_in_timeout": 1.0},
        "sentiment": {"refresh_sec": 0},
        "risk": {"max_position_notional": 50_000, "max_leverage": 2},
    }
    for section, values in demo.items():
        settings[section] = {**settings.get(section, {}), **values}
    raw["demo"] = settings
    return raw


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(default=Reply(content=json.dumps(BUY))) as running:
        yield running


async def run_demo(project: Path, raw: dict[str, Any]) -> Runtime:
    rt = await open_runtime(parse_config(raw, path=project / "loom.toml"))
    await rt.start(*agents())
    return rt


async def collect(sub: Subscription, count: int, timeout: float = 30) -> list[Any]:
    return [await sub.get(timeout=timeout) for _ in range(count)]


@pytest.fixture
async def demo(project: Path, server: OpenAIServer) -> AsyncIterator[Runtime]:
    rt = await run_demo(project, demo_config(project, server))
    yield rt
    await rt.aclose()


async def test_all_six_agents_receive_and_emit(demo: Runtime) -> None:
    orders = await demo.subscribe("trade.order.*")
    filled = [o for o in await collect(orders, 4) if o.data["status"] == "filled"]
    assert filled, "no order filled"
    stats = {name: runner.statistics() for name, runner in demo.agents.items()}
    assert stats["data"].emitted > 0
    for name in ("trend", "risk", "sentiment", "planner", "executor"):
        assert stats[name].handled > 0, name
        assert stats[name].emitted > 0, name
        assert stats[name].errors == 0, name
        assert demo.status(name) in ("running", "idle"), name


async def test_a_workflow_is_one_trace_with_the_search_and_the_llm(demo: Runtime) -> None:
    orders = await demo.subscribe("trade.order.*")
    order = next(o for o in await collect(orders, 6) if o.data["status"] == "filled")
    trace_id = parse_traceparent(order.traceparent)[0]
    store = demo.span_store

    def spans() -> list[Any]:
        return store.trace(trace_id)

    await wait_until(
        lambda: len(spans()) >= 15 and any(s.name.startswith("tool ") for s in spans()), timeout=15
    )
    names = [span.name for span in spans()]
    symbol = order.data["symbol"]
    for expected in (
        f"publish market.price.{symbol}",
        f"handle market.price.{symbol}",
        f"publish analysis.trend.{symbol}",
        f"publish analysis.risk.{symbol}",
        f"publish analysis.sentiment.{symbol}",
        "tool web-search",
        "fan_in",
        "chat openai/loom-test",
        f"publish plan.{symbol}",
        f"handle plan.{symbol}",
        f"publish trade.order.{symbol}",
    ):
        assert expected in names, (expected, names)
    assert len(names) >= 15
    agents_in_trace = {span.agent for span in spans()}
    assert {"data", "trend", "risk", "sentiment", "planner", "executor"} <= agents_in_trace
    roots = [span for span in spans() if span.parent_id is None]
    assert [root.name for root in roots] == [f"publish market.price.{symbol}"]


async def test_orders_respect_the_risk_limits(demo: Runtime) -> None:
    plans = await demo.subscribe("plan.*")
    positions = await demo.subscribe("trade.position.*")
    seen = [Plan.model_validate(e.data) for e in await collect(plans, 6)]
    llm_plans = [plan for plan in seen if plan.source == "llm"]
    assert llm_plans, [plan.fallback_reason for plan in seen]
    for plan in llm_plans:  # the LLM asked for 1,000 units at leverage 3
        assert plan.leverage <= 2
        if plan.action == "BUY":
            assert plan.size * plan.price <= 50_000 * 1.0001
            assert any("max_position_notional" in check for check in plan.checks)
    for event in await collect(positions, 6):
        position = Position.model_validate(event.data)
        assert abs(position.size) * (position.entry_price or position.mark_price) <= 50_000 * 1.01
        assert position.leverage <= 2 + 1e-9


async def test_a_dead_search_server_degrades_sentiment_and_the_pipeline_goes_on(
    project: Path, server: OpenAIServer
) -> None:
    raw = demo_config(project, server)
    raw["mcp"]["web-search"]["args"] = ["-m", "demo.market_analyst.no_such_server"]
    rt = await run_demo(project, raw)
    try:
        sentiments = await rt.subscribe("analysis.sentiment.*")
        orders = await rt.subscribe("trade.order.*")
        failed = Sentiment.model_validate((await sentiments.get(timeout=30)).data)
        assert failed.error and failed.error.startswith("search failed")
        assert (failed.score, failed.label) == (0.0, "neutral")
        assert Order.model_validate((await orders.get(timeout=30)).data).status in ("filled", "new")
        assert rt.status("sentiment") in ("running", "idle")
    finally:
        await rt.aclose()


async def test_an_llm_timeout_falls_back_to_rules_and_says_so(
    project: Path, server: OpenAIServer
) -> None:
    server.push(*[Reply(content=json.dumps(BUY), delay=3)] * 4)
    raw = demo_config(project, server)
    raw["llm"]["deepseek"]["timeout_sec"] = 0.3
    rt = await run_demo(project, raw)
    try:
        plans = await rt.subscribe("plan.*")
        plan = Plan.model_validate((await plans.get(timeout=30)).data)
        assert plan.source == "rules"
        assert "LLM unavailable" in plan.fallback_reason
        await wait_until(lambda: rt.agents["planner"].agent.plans >= 3, timeout=20)
        assert rt.status("planner") in ("running", "idle")
    finally:
        await rt.aclose()


async def test_the_offline_demo_plans_by_rules_without_a_key(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    raw = demo_config(project)
    raw["llm"] = tomllib.loads((PROJECT / "loom.toml").read_text())["llm"]  # the real entry
    rt = await run_demo(project, raw)
    try:
        plans = await rt.subscribe("plan.*")
        plan = Plan.model_validate((await plans.get(timeout=30)).data)
        assert plan.source == "rules" and plan.model is None
        assert "DEEPSEEK_API_KEY" in plan.fallback_reason
    finally:
        await rt.aclose()
