"""``loom bench``: measure the bus against raw pyzmq in the same run."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..errors import LoomError
from ..ops.bench import BenchPlan, run_bench
from ..ops.bench.bus import measure_loom


def bench(
    quick: Annotated[bool, typer.Option("--quick", help="Smaller run, under 30 s.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object only.")] = False,
    count: Annotated[int | None, typer.Option(help="Events for the throughput runs.")] = None,
    duration: Annotated[float | None, typer.Option(help="Seconds per latency rate.")] = None,
    tools: Annotated[
        bool, typer.Option("--tools", help="Tool calls instead: agent tool and MCP stdio.")
    ] = False,
    calls: Annotated[int, typer.Option(help="Calls per tool measurement.")] = 2000,
    demo: Annotated[
        bool, typer.Option("--demo", help="The Market Analyst: tick → order latency.")
    ] = False,
    rate: Annotated[float, typer.Option(help="Demo ticks per second, all symbols.")] = 100.0,
    security: Annotated[
        bool, typer.Option("--security", help="Throughput on a CURVE bus beside a plain one.")
    ] = False,
    backend: Annotated[
        str,
        typer.Option(
            help="nats: Loom on local nats-servers beside Loom on ZeroMQ, raw nats-py beside "
            "raw pyzmq, and JetStream's reliable delivery on 3 nodes (a leader killed)."
        ),
    ] = "zeromq",
) -> None:
    """Throughput (raw pyzmq vs Loom, across processes) and publish→handler latency;
    with --tools, tool-call round trips.

    Examples: `loom bench --quick --json`, `loom bench --tools`, `loom bench --security`,
    `loom bench --backend nats --quick`.
    """
    if backend not in ("zeromq", "nats"):
        raise LoomError(f"--backend {backend!r}: use zeromq or nats")
    if backend == "nats":
        _bench_nats(quick, count, duration, as_json)
        return
    if tools:
        _bench_tools(calls if not quick else min(calls, 500), as_json)
        return
    if security:
        _bench_security(count or (20_000 if quick else 100_000), as_json)
        return
    if demo:
        seconds = duration if duration is not None else (10.0 if quick else 30.0)
        _bench_demo(seconds, rate, as_json)
        return
    _bench_bus(quick, count, duration, as_json)


def _bench_bus(quick: bool, count: int | None, duration: float | None, as_json: bool) -> None:
    plan = BenchPlan.quick() if quick else BenchPlan()
    if count is not None:
        plan = BenchPlan(count=count, rates=plan.rates, duration=plan.duration)
    if duration is not None:
        plan = BenchPlan(count=plan.count, rates=plan.rates, duration=duration)
    console = Console(stderr=True)
    with console.status("starting") as status:
        result = run_bench(plan, progress=lambda step: status.update(f"[bold]{step}"))
    if as_json:
        print(json.dumps(result.to_dict()))
        return
    out = Console()
    out.print(_throughput_table(result.throughput))
    latency = Table(title="publish → handler latency")
    for column in ("rate ev/s", "p50 ms", "p99 ms", "max ms", "sent", "received"):
        latency.add_column(column, justify="right")
    for row in result.latency:
        latency.add_row(
            f"{row['rate_eps']:,}",
            f"{row['p50_ms']:.3f}",
            f"{row['p99_ms']:.3f}",
            f"{row['max_ms']:.3f}",
            f"{row['sent']:,}",
            f"{row['received']:,}",
        )
    out.print(latency)


def _throughput_table(t: dict) -> Table:
    table = Table(title=f"Throughput (events/s; raw pyzmq PUB→SUB: {t['raw_pyzmq_eps']:,})")
    for column in ("Loom", "events/s", "ratio to raw"):
        table.add_column(column, justify="right")
    rows = [
        ("across processes: broker → handler", t["loom_eps"], t["ratio"]),
        ("the same, traced (every event)", t["loom_traced_eps"], None),
        ("in process: two agents of one runtime", t["inprocess_eps"], t["inprocess_ratio"]),
        (
            f"fan-out: slowest of {t['fanout_agents']} agents in 4 processes",
            t["fanout_slowest_agent_eps"],
            t["fanout_ratio"],
        ),
        ("fan-out: deliveries in all", t["fanout_deliveries_eps"], None),
    ]
    for label, eps, ratio in rows:
        table.add_row(label, f"{eps:,}", "" if ratio is None else f"{ratio:.1%}")
    return table


def _bench_tools(calls: int, as_json: bool) -> None:
    from ..ops.bench import run_tool_bench

    console = Console(stderr=True)
    with console.status("starting") as status:
        result = run_tool_bench(calls, progress=lambda step: status.update(f"[bold]{step}"))
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title="Tool call round trip (ms)")
    for column in ("call", "calls", "p50", "p99", "mean"):
        table.add_column(column, justify="right")
    rows = [
        ("agent @tool, other process", result["agent_tool"]),
        ("MCP stdio, direct SDK client", result["mcp_stdio"]["direct"]),
        ("MCP stdio, through ctx.tool", result["mcp_stdio"]["loom"]),
    ]
    for label, row in rows:
        table.add_row(
            label,
            f"{row['calls']:,}",
            f"{row['p50_ms']:.3f}",
            f"{row['p99_ms']:.3f}",
            f"{row['mean_ms']:.3f}",
        )
    out = Console()
    out.print(table)
    mcp = result["mcp_stdio"]
    out.print(
        f"Loom's overhead per MCP call: {mcp['overhead_p50_ms']:+.3f} ms at p50 "
        f"({mcp['ratio_p50']:.2f}x the direct call)"
    )


def _bench_demo(seconds: float, rate: float, as_json: bool) -> None:
    import importlib
    import sys
    from pathlib import Path

    checkout = Path(__file__).resolve().parents[2]  # an editable install: the repository
    if (checkout / "demo" / "market_analyst").is_dir() and str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    try:
        bench_demo = importlib.import_module("demo.market_analyst.bench")
    except ImportError as exc:
        raise LoomError(
            f"the Market Analyst demo is not importable ({exc}): run `loom bench --demo` from "
            "a checkout of the Loom repository, with `pip install -e '.[demo]'`"
        ) from None
    console = Console(stderr=True)
    with console.status(
        f"running the six agents at {rate:g} ticks/s for {seconds:g} s (+5 s warm-up)"
    ):
        result = bench_demo.run(seconds, rate)
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title="Market Analyst: tick → order (rule planner, LLM time excluded)")
    for column in ("ticks/s", "ticks", "lost", "orders", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{result['ticks_per_second']:g}",
        f"{result['ticks_published']:,}",
        str(result["ticks_lost"]),
        f"{result['orders']:,}",
        *(
            f"{result[key]:.3f}" if result[key] is not None else "-"
            for key in ("latency_p50_ms", "latency_p99_ms", "latency_max_ms")
        ),
    )
    Console().print(table)


def _bench_security(count: int, as_json: bool) -> None:
    """The same cross-process run on a plain bus and on a CURVE one, in this run."""
    console = Console(stderr=True)
    figures = {}
    with console.status("starting") as status:
        for name, secured in (("plain", False), ("curve", True)):
            status.update(f"[bold]{name} bus: {count:,} events across two processes")
            figures[name] = measure_loom(count, secured=secured)
    plain, curve = figures["plain"]["eps"], figures["curve"]["eps"]
    result = {
        "plain_eps": round(plain),
        "curve_eps": round(curve),
        "ratio": round(curve / plain, 3) if plain else 0.0,
        "plain_received": figures["plain"]["received"],
        "curve_received": figures["curve"]["received"],
        "count": count,
    }
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title="a CURVE bus beside a plain one (sender → broker → handler)")
    for column in ("bus", "events/s", "received", "vs plain"):
        table.add_column(column, justify="right")
    for name, eps, ratio in (("plain", plain, 1.0), ("curve", curve, result["ratio"])):
        table.add_row(name, f"{eps:,.0f}", f"{result[f'{name}_received']:,}", f"{ratio:.2f}")
    Console().print(table)


def _bench_nats(quick: bool, count: int | None, duration: float | None, as_json: bool) -> None:
    from ..ops.bench.nats import run_nats_bench

    events = count or (50_000 if quick else 200_000)
    seconds = duration if duration is not None else (3.0 if quick else 10.0)
    reliable = 6_000 if quick else 20_000
    if count is not None:  # a small run is small everywhere
        reliable = min(reliable, max(count // 4, 1_000))
    console = Console(stderr=True)
    with console.status("starting nats-servers") as status:
        result = run_nats_bench(
            events, 1_000, seconds, reliable, lambda step: status.update(f"[bold]{step}")
        )
    if as_json:
        print(json.dumps(result))
        return
    out = Console()
    t = result["throughput"]
    table = Table(title="Throughput across two processes (events/s)")
    for column in ("", "raw client", "Loom → a handler", "Loom / raw"):
        table.add_column(column, justify="right")
    table.add_row("NATS", f"{t['raw_nats_py_eps']:,}", f"{t['loom_nats_eps']:,}",
                  f"{t['nats_ratio_to_raw']:.1%}")  # fmt: skip
    table.add_row("ZeroMQ", f"{t['raw_pyzmq_eps']:,}", f"{t['loom_zeromq_eps']:,}",
                  f"{t['zeromq_ratio_to_raw']:.1%}")  # fmt: skip
    out.print(table)
    out.print(f"Loom on NATS / Loom on ZeroMQ: {t['nats_to_zeromq']:.2f}")
    latency = Table(title="publish → handler latency (ms)")
    for column in ("bus", "rate ev/s", "p50", "p99", "max", "sent", "received"):
        latency.add_column(column, justify="right")
    for name, row in result["latency"].items():
        latency.add_row(name, f"{row['rate_eps']:,}", f"{row['p50_ms']:.3f}",
                        f"{row['p99_ms']:.3f}", f"{row['max_ms']:.3f}", f"{row['sent']:,}",
                        f"{row['received']:,}")  # fmt: skip
    out.print(latency)
    reliable_table = Table(title="JetStream, 3 nodes, replicas = 3 (reliable topic)")
    for column in ("run", "events/s", "sent", "lost", "handled twice", "sent again"):
        reliable_table.add_column(column, justify="right")
    killed = result["leader_killed"]
    for label, row in (
        ("steady", result["reliable"]),
        (f"leader {killed['killed']} killed", killed),
    ):
        reliable_table.add_row(label, f"{row['eps']:,}", f"{row['sent']:,}", str(row["lost"]),
                               str(row["twice"]), f"{row['resent']:,}")  # fmt: skip
    out.print(reliable_table)
