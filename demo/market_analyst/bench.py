"""``loom bench --demo``: tick → order latency of the Market Analyst, and lost ticks.

The six agents run in one process, as ``make demo`` runs them, on the offline data at
``rate`` ticks per second spread over five symbols, with the rule planner (no LLM:
LLM time is excluded from the figure by design, and ``Plan.llm_ms`` is subtracted in
case one is configured). The planner is set to plan on every trend and the risk limits
are wide, so most strong signals become orders. For each filled order, the latency is
``order.ts - order.tick_ts - plan.llm_ms``: from the data agent publishing the tick to
the executor publishing the order, across trend, risk, sentiment, the planner's fan-in
and the executor. Ticks lost = every drop or sequence gap the agents' subscriptions
counted (realtime mailboxes drop the oldest when an agent falls behind).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from loom_kernel import Agent, on_event, open_runtime
from loom_kernel.config import parse_config
from loom_kernel.stats import percentile

from .app import PROJECT, agents

__all__ = ["bench_config", "measure"]

REPO = PROJECT.parent.parent


def bench_config(folder: Path, rate: float, symbols: list[str]) -> dict[str, Any]:
    """The demo's loom.toml, tuned for measuring (see the module docstring)."""
    raw = tomllib.loads((PROJECT / "loom.toml").read_text(encoding="utf-8"))
    raw["mcp"]["web-search"]["cwd"] = str(REPO)
    raw.pop("llm", None)
    raw["demo"] = {
        "symbols": symbols,
        "data": {"ticks_per_second": rate / len(symbols)},
        "planner": {
            "llm": None,
            "plan_every_sec": 0,
            "duplicate_window_sec": 0,
            "min_confidence": 0,
        },
        "risk": {"max_position_notional": 1e12, "max_var_fraction": 1.0},
        "executor": {"cash": 1e12},
    }
    return raw


class _OrderClock(Agent):
    """Collects the latency of every filled order."""

    traced = False  # an observer: no spans of its own in the workflows it watches

    id = "bench-orders"

    def __init__(self) -> None:
        super().__init__()
        self.latencies: list[float] = []
        self.llm_ms: dict[str, float] = {}

    @on_event("plan.*")
    async def plan(self, event: Any, ctx: Any) -> None:
        self.llm_ms[event.data["id"]] = event.data.get("llm_ms", 0.0)

    @on_event("trade.order.*")
    async def order(self, event: Any, ctx: Any) -> None:
        order = event.data
        if order.get("status") == "filled" and order.get("plan_id") and order.get("tick_ts"):
            llm = self.llm_ms.get(order["plan_id"], 0.0) / 1000
            self.latencies.append((order["ts"] - order["tick_ts"] - llm) * 1000)


async def measure(
    duration: float = 30.0, rate: float = 100.0, warmup: float = 5.0
) -> dict[str, Any]:
    """Run the demo for ``warmup + duration`` seconds; figures from after the warm-up."""
    symbols = ["AAPL", "GOOG", "IBM", "MSFT", "BTC-USDT"]
    with tempfile.TemporaryDirectory(prefix="loom-bench-demo-") as folder:
        project = Path(folder)
        config = parse_config(bench_config(project, rate, symbols), path=project / "loom.toml")
        clock = _OrderClock()
        async with open_runtime(config) as rt:
            six = agents()
            await rt.start(clock, *six)
            await asyncio.sleep(warmup)  # indicators warm up, the MCP server starts
            clock.latencies.clear()
            before = _tick_counts(rt)
            started = time.monotonic()
            await asyncio.sleep(duration)
            elapsed = time.monotonic() - started
            after = _tick_counts(rt)
            latencies = sorted(clock.latencies)
            stats = {name: runner.statistics() for name, runner in rt.agents.items()}
    published = after["published"] - before["published"]
    return {
        "rate_target": rate,
        "symbols": len(symbols),
        "seconds": round(elapsed, 2),
        "ticks_published": published,
        "ticks_per_second": round(published / elapsed, 1),
        "ticks_lost": after["lost"] - before["lost"],
        "orders": len(latencies),
        "latency_p50_ms": round(percentile(latencies, 50), 3) if latencies else None,
        "latency_p99_ms": round(percentile(latencies, 99), 3) if latencies else None,
        "latency_max_ms": round(latencies[-1], 3) if latencies else None,
        "agents": {
            name: {"handled": s.handled, "dropped": s.dropped, "lost": s.lost, "errors": s.errors}
            for name, s in stats.items()
        },
    }


def _tick_counts(rt: Any) -> dict[str, int]:
    data = rt.agents["data"].agent
    published = sum(getattr(data, "published", {}).values())
    lost = sum(
        runner.statistics().dropped + runner.statistics().lost
        for name, runner in rt.agents.items()
        if name in ("trend", "risk", "sentiment", "executor", "planner")
    )
    return {"published": published, "lost": lost}


def run(duration: float = 30.0, rate: float = 100.0) -> dict[str, Any]:
    return asyncio.run(measure(duration, rate))
