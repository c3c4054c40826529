"""Run the Market Analyst: the six agents on one bus, with a live terminal view.

    python -m demo.market_analyst                  # until Ctrl-C
    python -m demo.market_analyst --duration 30    # 30 s, then a summary

The project folder is ``demo/market_analyst/`` (its ``loom.toml`` declares the
``web-search`` MCP server, the ``deepseek`` LLM and the ``[demo]`` settings), so the
bus, memory and traces of the demo live in ``demo/market_analyst/.loom/``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.logging import RichHandler
from rich.table import Table

from loom_kernel import Agent, on_event, open_runtime

from .data import DataAgent
from .executor import ExecutorAgent
from .planner import PlannerAgent
from .risk import RiskAgent
from .sentiment import SentimentAgent
from .trend import TrendAgent

__all__ = ["PROJECT", "agents", "main", "run"]

PROJECT = Path(__file__).resolve().parent


def agents() -> list[Agent]:
    """The six agents, upstream last (so every consumer listens before data flows)."""
    return [
        ExecutorAgent(),
        PlannerAgent(),
        TrendAgent(),
        RiskAgent(),
        SentimentAgent(),
        DataAgent(),
    ]


class View:
    """What the terminal shows, fed from the bus like any other observer."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.status: dict[str, str] = {}
        self.plans = {"llm": 0, "rules": 0}
        self.orders = 0
        self.started = time.monotonic()

    def row(self, symbol: str) -> dict[str, Any]:
        return self.rows.setdefault(symbol, {})

    def feed(self, event: Any) -> None:
        topic, data = event.topic, event.data
        parts = topic.split(".")
        if topic.startswith("market.price."):
            self.row(data["symbol"])["price"] = data["price"]
        elif topic.startswith("analysis.trend."):
            self.row(data["symbol"])["trend"] = f"{data['signal']} {data['strength']:.2f}"
        elif topic.startswith("analysis.risk."):
            self.row(data["symbol"])["risk"] = (
                "ok" if data["allowed"] else f"[red]{data['reason']}[/]"
            )
        elif topic.startswith("analysis.sentiment."):
            text = f"{data['score']:+.2f}"
            self.row(data["symbol"])["sentiment"] = (
                f"[red]{text} (search failed)[/]" if data.get("error") else text
            )
        elif topic.startswith("plan."):
            self.plans[data["source"]] += 1
            self.row(data["symbol"])["plan"] = (
                f"{data['action']} {data['confidence']:.2f} [dim]({data['source']})[/]"
            )
        elif topic.startswith("trade.order.") and data.get("status") == "filled":
            self.orders += 1
        elif topic.startswith("trade.position."):
            row = self.row(data["symbol"])
            row["position"] = f"{data['size']:+.4g}"
            row["pnl"] = data["unrealized_pnl"] + data["realized_pnl"] - data["fees"]
        elif (
            topic.startswith("loom.agent.")
            and parts[-1] == "heartbeat"
            and not data["agent_id"].startswith("studio-")  # the studio's own observer
        ):
            self.status[data["agent_id"]] = data["status"]

    def render(self) -> Group:
        table = Table(title="Market Analyst (paper trading, offline data)", expand=True)
        for column in (
            "symbol",
            "price",
            "trend",
            "risk",
            "sentiment",
            "last plan",
            "position",
            "PnL",
        ):
            table.add_column(column, justify="right" if column in ("price", "PnL") else "left")
        for symbol in sorted(self.rows):
            row = self.rows[symbol]
            pnl = row.get("pnl")
            table.add_row(
                symbol,
                f"{row['price']:,.2f}" if "price" in row else "-",
                row.get("trend", "-"),
                row.get("risk", "-"),
                row.get("sentiment", "-"),
                row.get("plan", "-"),
                row.get("position", "-"),
                f"[{'green' if pnl >= 0 else 'red'}]{pnl:,.2f}[/]" if pnl is not None else "-",
            )
        agents = "  ".join(f"{name}: {state}" for name, state in sorted(self.status.items()))
        elapsed = time.monotonic() - self.started
        footer = (
            f"{elapsed:,.0f} s   plans by LLM: {self.plans['llm']}  by rules: "
            f"{self.plans['rules']}   filled orders: {self.orders}\n{agents}"
        )
        return Group(table, footer)


async def run(
    duration: float | None = None,
    *,
    config: str | Path | None = None,
    view: bool = True,
    console: Console | None = None,
    studio_port: int | None = None,
) -> View:
    """Start the six agents and watch them; returns the view's last state.

    With ``studio_port`` (0: a free port), the standalone studio is served too, joined
    to the demo's bus like any other process.
    """
    console = console or Console()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    state = View()
    async with open_runtime(config or PROJECT / "loom.toml") as rt:
        bus = rt.address.publish if rt.address else "the bus"
        store = rt.config.project_path(rt.config.tracing.store_path)
        # the studio first: importing Panel takes a moment the agents should not lose
        async with _studio(rt, studio_port, console):
            # the [mcp.*] servers start now (listing their tools starts them; one that fails
            # is logged and left out): on the first tick, the ticks would queue behind them
            await rt.tools(timeout=0.1)
            await rt.start(ViewAgent(state), *agents())
            console.print(
                f"[bold green]Market Analyst[/]: 6 agents on {bus}; traces in {store} "
                f"(`loom traces --config {PROJECT / 'loom.toml'}`)."
            )
            if duration is not None:
                loop.call_later(duration, stop.set)
            if view:
                with Live(state.render(), console=console, refresh_per_second=4) as live:
                    while not stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), 0.25)
                        live.update(state.render())
            else:
                await stop.wait()
    return state


@contextlib.asynccontextmanager
async def _studio(rt: Any, port: int | None, console: Console) -> Any:
    """The standalone studio on this event loop, joined to the demo's bus."""
    if port is None:
        yield None
        return
    from loom_studio.app import serve
    from loom_studio.feed import StudioFeed

    feed = await StudioFeed().open(rt.config)
    try:
        server = serve(rt.config, port=port, feed=feed)
    except OSError:  # the port is taken: any free one will do
        server = serve(rt.config, port=0, feed=feed)
    console.print(f"[bold green]Studio[/]: open http://127.0.0.1:{server.port}/")
    try:
        yield server
    finally:
        server.stop()
        await feed.aclose()


class ViewAgent(Agent):
    """Feeds the terminal view from the bus (an observer: it emits nothing)."""

    traced = False  # an observer: no spans of its own in the workflows it watches

    id = "terminal-view"

    def __init__(self, state: View):
        super().__init__()
        self.state = state

    @on_event("market.price.*", qos="realtime")
    @on_event("analysis.*", qos="realtime")
    @on_event("plan.*")
    @on_event("trade.*")
    @on_event("loom.agent.*", qos="realtime")
    async def feed(self, event: Any, ctx: Any) -> None:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            self.state.feed(event)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo.market_analyst", description=__doc__)
    parser.add_argument("--duration", type=float, default=None, help="seconds, then stop")
    parser.add_argument("--config", default=None, help="a loom.toml (default: the demo's)")
    parser.add_argument("--no-view", action="store_true", help="no live table")
    parser.add_argument("--studio-port", type=int, default=5006, help="0: any free port")
    parser.add_argument("--no-studio", action="store_true", help="do not serve the studio")
    options = parser.parse_args(argv)
    console = Console()
    # Agents' warnings print above the live table instead of tearing it.
    logging.basicConfig(
        level=logging.WARNING,
        format="%(name)s: %(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    state = asyncio.run(
        run(
            options.duration,
            config=options.config,
            view=not options.no_view,
            console=console,
            studio_port=None if options.no_studio else options.studio_port,
        )
    )
    console.print(
        f"stopped: plans by LLM {state.plans['llm']}, by rules {state.plans['rules']}, "
        f"filled orders {state.orders}"
    )
