"""Hello, agents: three agents trading on a Loom bus, watched live in the terminal.

    python demo/hello_agents.py                  # until Ctrl-C
    python demo/hello_agents.py --duration 10    # ten seconds, then a summary

- ticker:  a seeded random walk for BTC, ETH and SOL, ~20 ticks a second on
           ``market.price.<SYM>``; answers quote requests on ``market.quote.<SYM>``.
- analyst: a moving average per symbol; emits ``analysis.trend.<SYM>`` when the
           price moves to the other side of it.
- trader:  on each signal, asks the ticker for a quote (request/reply) and keeps a
           paper position: long on "up", flat on "down"; fills go on ``trade.fill.<SYM>``.

The table is drawn by an observer that knows the agents only through the bus, as the
studio does: their heartbeats on ``loom.agent.*.heartbeat`` and the events they publish.
With no ``loom.toml`` the runtime embeds the bus; another process of the same project
folder joins it through ``.loom/bus.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import random
import signal
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from loom_kernel import Agent, Context, Envelope, Runtime, Subscription, on_event, open_runtime
from loom_kernel.runtime import RuntimeStatistics

START_PRICES = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0}
VOLATILITY = 0.002  # standard deviation of one tick's log return
SPREAD = 0.0004  # quoted ask - bid, relative to the price
REFRESH = 0.25  # seconds between redraws of the table
STATUS_STYLES = {"running": "green", "idle": "yellow", "stalled": "red", "failed": "bold red"}


class Ticker(Agent):
    """Simulated prices: a seeded geometric random walk per symbol."""

    def __init__(self, seed: int, rate: float = 20.0, agent_id: str = "ticker"):
        super().__init__(agent_id)
        self.prices = dict(START_PRICES)
        self.interval = 1.0 / rate
        self._rng = random.Random(seed)

    async def run(self, ctx: Context) -> None:
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            for symbol, price in self.prices.items():
                price *= math.exp(self._rng.gauss(0.0, VOLATILITY))
                self.prices[symbol] = price
                await ctx.emit(f"market.price.{symbol}", {"symbol": symbol, "price": price})
            # A fixed schedule, so the rate does not drift with the time spent emitting.
            next_tick += self.interval
            await asyncio.sleep(max(0.0, next_tick - loop.time()))

    @on_event("market.quote.*")
    async def quote(self, event: Envelope, ctx: Context) -> None:
        symbol = event.topic.rsplit(".", 1)[-1]
        price = self.prices.get(symbol)
        if price is None:
            raise ValueError(f"no market for {symbol!r}: quotes exist for {', '.join(self.prices)}")
        half = price * SPREAD / 2
        await ctx.reply(event, {"symbol": symbol, "bid": price - half, "ask": price + half})


class Analyst(Agent):
    """Signals when a price crosses its moving average by more than a small band."""

    def __init__(self, window: int = 20, band: float = 0.0005, agent_id: str = "analyst"):
        super().__init__(agent_id)
        self.band = band
        self._windows: defaultdict[str, deque[float]] = defaultdict(lambda: deque(maxlen=window))
        self._trends: dict[str, str] = {}

    @on_event("market.price.*")
    async def on_price(self, event: Envelope, ctx: Context) -> None:
        symbol, price = event.data["symbol"], event.data["price"]
        window = self._windows[symbol]
        window.append(price)
        if len(window) < (window.maxlen or 0):
            return
        average = fmean(window)
        deviation = price / average - 1
        if abs(deviation) < self.band:
            return  # too close to the average to call: no flip-flopping on noise
        trend = "up" if deviation > 0 else "down"
        if self._trends.get(symbol) != trend:
            self._trends[symbol] = trend
            signal_data = {"symbol": symbol, "trend": trend, "price": price, "average": average}
            await ctx.emit(f"analysis.trend.{symbol}", signal_data)


@dataclass
class PaperBook:
    """Positions and cash of a paper account that started with no cash (equity = P&L)."""

    cash: float = 0.0
    positions: dict[str, float] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    trades: int = 0

    def mark(self, symbol: str, price: float) -> None:
        self.marks[symbol] = price

    def fill(self, symbol: str, quantity: float, price: float) -> dict[str, Any]:
        """Buy (quantity > 0) or sell at ``price``; returns the fill as published."""
        self.positions[symbol] = self.positions.get(symbol, 0.0) + quantity
        self.cash -= quantity * price
        self.trades += 1
        return {
            "symbol": symbol,
            "side": "buy" if quantity > 0 else "sell",
            "quantity": abs(quantity),
            "price": price,
            "position": self.positions[symbol],
            "equity": self.equity,
        }

    @property
    def equity(self) -> float:
        return self.cash + sum(q * self.marks.get(s, 0.0) for s, q in self.positions.items())


class Trader(Agent):
    """Long when the analyst says "up", flat when it says "down", at the ticker's quotes."""

    def __init__(self, notional: float = 1_000.0, agent_id: str = "trader"):
        super().__init__(agent_id)
        self.notional = notional
        self.book = PaperBook()

    @on_event("analysis.trend.*")
    async def on_signal(self, event: Envelope, ctx: Context) -> None:
        symbol, trend = event.data["symbol"], event.data["trend"]
        # Every signal marks the book to the current quote, even when there is nothing to trade.
        quote = (await ctx.request(f"market.quote.{symbol}", timeout=1.0)).data
        self.book.mark(symbol, (quote["bid"] + quote["ask"]) / 2)
        held = self.book.positions.get(symbol, 0.0)
        if trend == "up" and held <= 0:
            fill = self.book.fill(symbol, self.notional / quote["ask"], quote["ask"])
        elif trend == "down" and held > 0:
            fill = self.book.fill(symbol, -held, quote["bid"])
        else:
            return
        await ctx.emit(f"trade.fill.{symbol}", fill)


class Dashboard:
    """An observer of the bus: agent heartbeats, prices, and the last signals and fills."""

    PATTERNS = ("loom.agent.*.heartbeat", "market.price.*", "analysis.trend.*", "trade.fill.*")

    def __init__(self, recent: int = 8):
        self.agents: dict[str, dict[str, Any]] = {}
        self.prices: dict[str, float] = {}
        self.recent: deque[Envelope] = deque(maxlen=recent)
        self.equity: float | None = None
        self._subscriptions: list[Subscription] = []

    async def subscribe(self, rt: Runtime) -> None:
        """Subscribe before the agents start, so their first heartbeat is seen."""
        for pattern in self.PATTERNS:
            sub = await rt.subscribe(pattern, qos="realtime", mailbox_size=1_000)
            self._subscriptions.append(sub)

    async def show(self, live: Live, stop: asyncio.Event) -> None:
        """Follow the bus and redraw until ``stop`` is set."""
        async with asyncio.TaskGroup() as group:
            for sub in self._subscriptions:
                group.create_task(self._follow(sub))
            try:
                while not stop.is_set():
                    live.update(self.render(), refresh=True)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), REFRESH)
                live.update(self.render(), refresh=True)
            finally:
                for sub in self._subscriptions:
                    await sub.aclose()  # ends the followers' loops

    async def _follow(self, sub: Subscription) -> None:
        async for event in sub:
            self.observe(event)

    def observe(self, event: Envelope) -> None:
        if event.type == "heartbeat":
            self.agents[event.source] = event.data
        elif event.topic.startswith("market.price."):
            self.prices[event.data["symbol"]] = event.data["price"]
        else:
            self.recent.append(event)
            if event.topic.startswith("trade.fill."):
                self.equity = event.data["equity"]

    def render(self) -> Group:
        return Group(self._agents_table(), self._market_line(), self._events_table())

    def _agents_table(self) -> Table:
        table = Table(title="agents (from their heartbeats)", title_justify="left")
        table.add_column("agent")
        table.add_column("status")
        for name in ("handled", "emitted", "errors", "p99 latency ms"):
            table.add_column(name, justify="right")
        for agent_id, beat in sorted(self.agents.items()):
            table.add_row(
                agent_id,
                Text(beat["status"], style=STATUS_STYLES.get(beat["status"], "")),
                str(beat["handled"]),
                str(beat["emitted"]),
                str(beat["errors"]),
                f"{beat['latency_p99_ms']:.2f}",
            )
        return table

    def _market_line(self) -> Text:
        prices = "  ".join(f"{s} {p:,.2f}" for s, p in sorted(self.prices.items()))
        equity = "n/a" if self.equity is None else f"{self.equity:+,.2f}"
        return Text(f"prices: {prices or 'waiting'}   paper P&L: {equity}")

    def _events_table(self) -> Table:
        table = Table(title="last signals and fills", title_justify="left")
        for name in ("age s", "topic", "from", "data"):
            table.add_column(name)
        for event in reversed(self.recent):
            table.add_row(f"{event.age_ms / 1000:.1f}", event.topic, event.source, _brief(event))
        return table


def _brief(event: Envelope) -> str:
    data = event.data
    if event.topic.startswith("trade.fill."):
        return f"{data['side']} {data['quantity']:.4f} @ {data['price']:,.2f}"
    return f"{data['trend']}: {data['price']:,.2f} vs average {data['average']:,.2f}"


def describe_bus(rt: Runtime) -> str:
    kind = "embedded" if rt.embedded else "joined"
    if rt.address is None:
        return f"bus ({kind})"
    return f"bus ({kind}): publish {rt.address.publish}, subscribe {rt.address.subscribe}"


def summary_lines(stats: RuntimeStatistics, book: PaperBook, elapsed: float) -> list[str]:
    """The closing report: what each agent did, from the runtime's own statistics."""
    lines = [f"summary after {elapsed:.1f} s:"]
    for agent in stats.agents:
        lines.append(
            f"  {agent.agent_id:<8} handled {agent.handled:>6}  emitted {agent.emitted:>6}  "
            f"errors {agent.errors}  p99 {agent.latency_p99_ms:.2f} ms"
        )
    held = ", ".join(f"{s} {q:.4f}" for s, q in sorted(book.positions.items()) if q) or "none"
    lines.append(f"  paper book: {book.trades} trades, holding {held}, P&L {book.equity:+,.2f}")
    return lines


async def run_demo(args: argparse.Namespace, console: Console) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    trader = Trader()
    async with open_runtime() as rt:
        board = Dashboard()
        await board.subscribe(rt)
        await rt.start(Ticker(args.seed, args.rate), Analyst(), trader)
        started = time.monotonic()
        if args.duration is not None:
            loop.call_later(args.duration, stop.set)
        console.print(describe_bus(rt), highlight=False)
        console.print("Ctrl-C to stop" if args.duration is None else f"running {args.duration:g} s")
        with Live(board.render(), console=console, auto_refresh=False) as live:
            await board.show(live, stop)
        elapsed = time.monotonic() - started
        stats = rt.statistics()
        lines = summary_lines(stats, trader.book, elapsed)
    console.print()
    for line in lines:
        console.print(line, highlight=False, markup=False)
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Three agents (ticker, analyst, trader) on a Loom bus, shown live."
    )
    parser.add_argument(
        "--duration",
        type=float,
        metavar="SECONDS",
        help="stop after this many seconds and print a summary (default: run until Ctrl-C)",
    )
    parser.add_argument("--seed", type=int, default=7, help="random walk seed (default: 7)")
    parser.add_argument("--rate", type=float, default=20.0, help="ticks per second (default: 20)")
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be a positive number of seconds")
    if args.rate <= 0:
        parser.error("--rate must be a positive number of ticks per second")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return asyncio.run(run_demo(args, Console()))


if __name__ == "__main__":
    raise SystemExit(main())
