"""``loom bench``'s run: every measurement of a plan, in order, and the figures as one
JSON-ready object (each ratio to the raw pyzmq baseline of the same run)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .bus import BenchPlan, BenchResult, measure_latency, measure_loom, measure_raw
from .shapes import measure_fanout, measure_inprocess

__all__ = ["run_bench"]


def run_bench(plan: BenchPlan, progress: Callable[[str], None] = lambda _: None) -> BenchResult:
    """Run every measurement of ``plan``; ``progress`` is told each step as it starts."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    result = BenchResult()
    progress(f"raw pyzmq PUB→SUB, {plan.count:,} messages")
    raw = measure_raw(plan.count)
    progress(f"Loom through the broker to a handler, {plan.count:,} events")
    loom = measure_loom(plan.count)
    progress(f"the same with tracing on (every event sampled), {plan.count:,} events")
    traced = measure_loom(plan.count, traced=True)
    result.throughput = {
        "raw_pyzmq_eps": round(raw["eps"]),
        "loom_eps": round(loom["eps"]),
        "ratio": round(loom["eps"] / raw["eps"], 3) if raw["eps"] else 0.0,
        "loom_traced_eps": round(traced["eps"]),
        "tracing_cost": round(1 - traced["eps"] / loom["eps"], 3) if loom["eps"] else 0.0,
        "raw_received": raw["received"],
        "loom_received": loom["received"],
        "loom_traced_received": traced["received"],
        "traced_receiver_spans_exported": traced["spans_exported"],
        "traced_receiver_spans_dropped": traced["spans_dropped"],
        "count": plan.count,
    }
    progress(f"two agents in one runtime (in process), {plan.count:,} events")
    inprocess = measure_inprocess(plan.count)
    progress(f"fan-out: 1 publisher → 8 agents in 4 processes, {plan.count:,} events")
    fanout = measure_fanout(plan.count)
    result.throughput.update(_shapes(raw["eps"], inprocess, fanout))
    for rate in plan.rates:
        progress(f"publish→handler latency at {rate:,} events/s for {plan.duration:g} s")
        result.latency.append(measure_latency(rate, plan.duration))
    return result


def _shapes(raw: float, inprocess: dict[str, float], fanout: dict[str, float]) -> dict[str, Any]:
    ratio = lambda eps: round(eps / raw, 3) if raw else 0.0  # noqa: E731
    return {
        "inprocess_eps": round(inprocess["eps"]),
        "inprocess_ratio": ratio(inprocess["eps"]),
        "inprocess_received": inprocess["received"],
        "fanout_agents": fanout["agents"],
        "fanout_slowest_agent_eps": round(fanout["slowest_agent_eps"]),
        "fanout_ratio": ratio(fanout["slowest_agent_eps"]),
        "fanout_deliveries_eps": round(fanout["deliveries_eps"]),
        "fanout_received_min": fanout["received_min"],
    }
