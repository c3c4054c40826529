"""The data agent: price ticks on ``market.price.<SYMBOL>``, offline by default.

Every symbol of ``[demo] symbols`` gets ``[demo.data] ticks_per_second`` ticks a second
(:class:`~demo.market_analyst.schemas.Tick`, ``seq`` counting from 0 per symbol), from
one of three sources:

- **replay** (AAPL, GOOG, IBM, MSFT): real daily prices, public domain (Quandl WIKI via
  the ``bokeh-sampledata`` package, unadjusted, 2000 to 2013-03-01), replayed from
  ``start_date``; after the last day the replay starts again at ``start_date``, so all
  symbols stay on the same trading day.
- **sim** (BTC-USDT): a seeded geometric Brownian motion from 43,000, 60 % annualised
  volatility, no drift, with rare log-normal jumps (about one a month, 3 % typical size,
  mean-corrected so the price stays a martingale). One simulated 24-hour day passes
  every ``ticks_per_day`` ticks, from midnight UTC of ``start_date``.
- **okx** (``source = "okx"``): the symbols of ``okx_symbols`` stream live from OKX's
  public ``tickers`` channel (:mod:`~demo.market_analyst.okx`); the others keep their
  offline source. The latest update of each symbol is published at its next slot, so
  the rate is at most ``ticks_per_second``. Nothing touches the network in any other mode.

How a daily bar becomes intraday ticks. Each trading day becomes ``ticks_per_day``
ticks spread evenly over the regular session, 09:30 to 16:00 New York time (``ts`` is
that market time, as epoch seconds). The price path is drawn with a random generator
seeded by ``seed``, the symbol and the date, so a given day always replays the same
way, and two symbols differ. The path is pinned to four anchors: the open at the first
tick, the close at the last, and the day's high and low at two interior ticks (when
the open or the close is itself the high or the low, that end is the anchor). The low
comes first with probability ``1/2 + (close - open) / (2 (high - low))``, as on a day
that rallies from its low. Each leg between anchors gets a share of the session
proportional to the distance it travels plus a quarter of the day's range, stretched
by a random factor between 0.5 and 1.5, so a long climb takes longer than a small dip.
Between consecutive anchors the path is a Brownian bridge (Gaussian steps
of ``0.5 (high - low) / sqrt(ticks_per_day - 1)``, tied down at both anchors),
reflected at the high and the low and kept strictly between them: every tick lies in
``[low, high]``, the high and the low are each reached exactly once (unless the open
and the close both sit on one of them), the first tick is the open and the last the
close. The day's volume is split across the ticks with a U-shaped intraday profile
(weight ``1 + 2 (2t - 1)^2`` at session fraction ``t``, so the open and the close
trade three times the midday rate) times a log-normal jitter (sigma 0.25), and sums to
the day's volume. ``bid`` and ``ask`` are the price minus and plus half a spread of
1 basis point, for replayed and simulated ticks alike.

Ticks are paced by a deadline schedule (:class:`Schedule`): slot ``k`` is due at
``start + k / (rate * symbols)``, with the symbols taking turns, so the rate does not
drift with the time spent publishing.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from typing import Protocol
from zoneinfo import ZoneInfo

from loom_kernel import Agent, ConfigError, Context

from .okx import LiveFeed, stream_okx
from .quotes import Quote, quote
from .schemas import Tick
from .settings import (
    REPLAY_SYMBOLS,
    SIM_SYMBOLS,
    DataSettings,
    DemoSettings,
    demo_settings,
)

__all__ = [
    "GBM",
    "Bar",
    "DataAgent",
    "ReplayFeed",
    "Schedule",
    "SimFeed",
    "day_ticks",
    "intraday_prices",
    "intraday_volumes",
    "load_bars",
    "session_times",
]

NOISE = 0.5  # Brownian bridge scale: the day's range spread over the session
LEG_FLOOR = 0.25  # every leg between anchors lasts as if it moved this fraction of the range
U_SHAPE = 2.0  # extra volume weight at the open and the close
VOLUME_JITTER = 0.25  # sigma of the log-normal jitter of each tick's volume
NEW_YORK = ZoneInfo("America/New_York")
SESSION = ((9, 30), (16, 0))  # regular session, New York time

SIM_START_PRICE = 43_000.0
SIM_VOLATILITY = 0.60  # annualised
SIM_JUMPS_PER_YEAR = 12.0
SIM_JUMP_SIZE = 0.03  # standard deviation of a jump's log return
SIM_DAILY_VOLUME = 10_000.0  # units traded per simulated day

MAX_LAG = 1.0  # seconds behind schedule before the backlog is dropped instead of burst
YIELD_EVERY = 256  # ticks published before letting other tasks run, in a catch-up burst


@dataclass(frozen=True, slots=True)
class Bar:
    """One trading day of one symbol."""

    date: str  # YYYY-MM-DD
    open: float
    high: float
    low: float
    close: float
    volume: float


# -- replay: daily bars to intraday ticks -------------------------------------------------


def load_bars(symbol: str) -> list[Bar]:
    """The daily bars of a replayed symbol (:data:`REPLAY_SYMBOLS`), oldest first."""
    import bokeh_sampledata.stocks as stocks  # reads its bundled files: no network

    raw = getattr(stocks, symbol)
    columns = (raw[key] for key in ("date", "open", "high", "low", "close", "volume"))
    return [Bar(d, o, h, lo, c, float(v)) for d, o, h, lo, c, v in zip(*columns, strict=True)]


def day_rng(seed: int, symbol: str, day: str) -> random.Random:
    """The generator of one symbol's day: the same day always replays the same way."""
    return random.Random(f"{seed}:{symbol}:{day}")


def intraday_prices(bar: Bar, n: int, rng: random.Random) -> list[float]:
    """``n`` prices from the open to the close, reaching the high and low exactly once.

    Raises:
        ValueError: ``n < 4``, or the bar's open or close lies outside ``[low, high]``.
    """
    if n < 4:
        raise ValueError(f"an intraday path needs at least 4 ticks, got {n}")
    low, high = bar.low, bar.high
    if not (0 < low <= min(bar.open, bar.close) and max(bar.open, bar.close) <= high):
        raise ValueError(f"bad bar {bar}: need 0 < low <= open, close <= high")
    if low == high:
        return [bar.open] * n
    anchors = {0: bar.open, n - 1: bar.close}
    anchors.update(_extremes(bar, n, rng))
    path = [0.0] * n
    inside = (math.nextafter(low, high), math.nextafter(high, low))
    step = NOISE * (high - low) / math.sqrt(n - 1)
    points = sorted(anchors.items())
    for (i0, v0), (i1, v1) in pairwise(points):
        for j, x in enumerate(_bridge(v0, v1, i1 - i0, step, rng), start=i0 + 1):
            path[j] = min(max(_reflect(x, low, high), inside[0]), inside[1])
    for i, v in points:
        path[i] = v
    return path


def _extremes(bar: Bar, n: int, rng: random.Random) -> dict[int, float]:
    """Tick index → value for the high and the low that are not already an end."""
    span = bar.high - bar.low
    free = [v for v in (bar.low, bar.high) if v not in (bar.open, bar.close)]
    if len(free) == 2 and rng.random() >= 0.5 + 0.5 * (bar.close - bar.open) / span:
        free.reverse()  # the high first: more likely on a day that closes lower
    stops = [bar.open, *free, bar.close]
    legs = [(abs(b - a) + LEG_FLOOR * span) * rng.uniform(0.5, 1.5) for a, b in pairwise(stops)]
    slots: list[int] = []
    done, previous = 0.0, 0
    for k, leg in enumerate(legs[:-1]):
        done += leg
        latest = n - 1 - (len(free) - k)  # room for the extremes still to place
        previous = min(max(round(done / sum(legs) * (n - 1)), previous + 1), latest)
        slots.append(previous)
    return dict(zip(slots, free, strict=True))


def _bridge(v0: float, v1: float, m: int, step: float, rng: random.Random) -> list[float]:
    """The ``m - 1`` inner points of a Brownian bridge from ``v0`` to ``v1`` in ``m`` steps."""
    walk = [0.0]
    for _ in range(m):
        walk.append(walk[-1] + rng.gauss(0.0, step))
    end = walk[-1]
    return [v0 + (v1 - v0) * j / m + walk[j] - end * j / m for j in range(1, m)]


def _reflect(x: float, low: float, high: float) -> float:
    """``x`` folded into ``[low, high]`` as by mirrors at both bounds."""
    width = high - low
    y = (x - low) % (2 * width)
    return low + (y if y <= width else 2 * width - y)


def intraday_volumes(volume: float, n: int, rng: random.Random) -> list[float]:
    """``volume`` split over ``n`` ticks, U-shaped over the session, summing to it."""
    weights = [
        (1 + U_SHAPE * (2 * j / (n - 1) - 1) ** 2) * rng.lognormvariate(0.0, VOLUME_JITTER)
        for j in range(n)
    ]
    total = sum(weights)
    return [volume * w / total for w in weights]


def session_times(day: str, n: int) -> list[float]:
    """``n`` epoch times evenly from 09:30 to 16:00 New York time on ``day``."""
    d = date.fromisoformat(day)
    (oh, om), (ch, cm) = SESSION
    opens = datetime(d.year, d.month, d.day, oh, om, tzinfo=NEW_YORK).timestamp()
    closes = datetime(d.year, d.month, d.day, ch, cm, tzinfo=NEW_YORK).timestamp()
    return [opens + (closes - opens) * j / (n - 1) for j in range(n)]


def day_ticks(symbol: str, bar: Bar, n: int, seed: int) -> list[Quote]:
    """The ``n`` intraday quotes of one symbol's day (see the module docstring)."""
    rng = day_rng(seed, symbol, bar.date)
    prices = intraday_prices(bar, n, rng)
    volumes = intraday_volumes(bar.volume, n, rng)
    times = session_times(bar.date, n)
    return [quote(p, v, t) for p, v, t in zip(prices, volumes, times, strict=True)]


class Feed(Protocol):
    source: str

    def next_quote(self) -> Quote | None: ...


class ReplayFeed:
    """The intraday ticks of a symbol's days from ``start_date``, looping at the end.

    Raises:
        ConfigError: ``start_date`` is not a date, or comes after the last day of data.
    """

    source = "replay"

    def __init__(
        self, symbol: str, bars: Sequence[Bar], *, start_date: str, ticks_per_day: int, seed: int
    ):
        self.symbol, self.bars = symbol, bars
        self.ticks_per_day, self.seed = ticks_per_day, seed
        start = _parse_start_date(start_date)
        self.first = next((i for i, b in enumerate(bars) if b.date >= start), None)
        if self.first is None:
            raise ConfigError(
                f"demo.data.start_date = {start_date!r}: {symbol} data ends on "
                f"{bars[-1].date}; pick a day from {bars[0].date} to {bars[-1].date}"
            )
        self.day = self.first  # index of the bar being replayed
        self._ticks: list[Quote] = []
        self._next = 0

    def next_quote(self) -> Quote:
        if self._next == len(self._ticks):
            if self._ticks:
                self.day = self.day + 1 if self.day + 1 < len(self.bars) else self.first
            bar = self.bars[self.day]
            self._ticks = day_ticks(self.symbol, bar, self.ticks_per_day, self.seed)
            self._next = 0
        self._next += 1
        return self._ticks[self._next - 1]


def _parse_start_date(text: str) -> str:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        raise ConfigError(
            f"demo.data.start_date = {text!r} is not a date; write it as YYYY-MM-DD, "
            'e.g. start_date = "2012-01-03"'
        ) from None


# -- simulation -----------------------------------------------------------------------


class GBM:
    """Geometric Brownian motion with rare log-normal jumps (Merton), seeded.

    Args:
        start: the first price (> 0).
        volatility: annualised standard deviation of log returns.
        dt: one step, in years.
        rng: the random generator (seed it for a reproducible path).
        drift: annualised expected return.
        jumps_per_year: mean number of jumps a year (a jump is at most one per step).
        jump_size: standard deviation of a jump's log return; jumps are mean-corrected,
            so they add no drift.

    >>> GBM(100.0, volatility=0.6, dt=1 / 365, rng=random.Random(1)).step() > 0
    True
    """

    def __init__(
        self,
        start: float,
        *,
        volatility: float,
        dt: float,
        rng: random.Random,
        drift: float = 0.0,
        jumps_per_year: float = 0.0,
        jump_size: float = 0.0,
    ):
        if start <= 0 or dt <= 0:
            raise ValueError(f"GBM needs start > 0 and dt > 0, got start={start}, dt={dt}")
        self.price = start
        self.rng = rng
        self.jumps = 0
        self._sd = volatility * math.sqrt(dt)
        self._mean = (drift - volatility**2 / 2) * dt
        self._jump_chance = jumps_per_year * dt
        self._jump_size = jump_size

    def step(self) -> float:
        """Advance one step; returns the new price."""
        log_return = self._mean + self.rng.gauss(0.0, self._sd)
        if self.rng.random() < self._jump_chance:
            self.jumps += 1
            log_return += self.rng.gauss(-(self._jump_size**2) / 2, self._jump_size)
        self.price *= math.exp(log_return)
        return self.price


class SimFeed:
    """A simulated symbol: one 24-hour day of :class:`GBM` every ``ticks_per_day`` ticks."""

    source = "sim"

    def __init__(self, symbol: str, *, start_date: str, ticks_per_day: int, seed: int):
        start = date.fromisoformat(_parse_start_date(start_date))
        self.ts = datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp()
        self.step_seconds = timedelta(days=1).total_seconds() / ticks_per_day
        self.volume = SIM_DAILY_VOLUME / ticks_per_day
        self.rng = random.Random(f"{seed}:{symbol}:sim")
        self.gbm = GBM(
            SIM_START_PRICE,
            volatility=SIM_VOLATILITY,
            dt=1 / (365 * ticks_per_day),
            rng=self.rng,
            jumps_per_year=SIM_JUMPS_PER_YEAR,
            jump_size=SIM_JUMP_SIZE,
        )
        self._started = False

    def next_quote(self) -> Quote:
        if self._started:
            self.gbm.step()
            self.ts += self.step_seconds
        self._started = True
        volume = self.volume * self.rng.lognormvariate(0.0, VOLUME_JITTER)
        return quote(self.gbm.price, volume, self.ts)


# -- pacing and the agent -------------------------------------------------------------


class Schedule:
    """Slot ``k`` is due at ``start + k / rate``: computed, not accumulated, so no drift.

    More than ``max_lag`` seconds behind (a stalled loop), the backlog is dropped and
    counted in ``skipped`` rather than published in one burst.
    """

    def __init__(self, rate: float, start: float, *, max_lag: float = MAX_LAG):
        self.rate, self.max_lag = rate, max_lag
        self.next_slot = 0
        self.skipped = 0
        self._base, self._base_slot = start, 0

    def deadline(self, slot: int) -> float:
        return self._base + (slot - self._base_slot) / self.rate

    def take_due(self, now: float) -> range:
        """The slots due by ``now`` that were not taken yet."""
        behind = now - self.deadline(self.next_slot)
        if behind > self.max_lag:
            self.skipped += math.floor(behind * self.rate)
            self._base, self._base_slot = now, self.next_slot
        last = self._base_slot + math.floor((now - self._base) * self.rate)
        due = range(self.next_slot, max(self.next_slot, last + 1))
        self.next_slot = due.stop
        return due

    def delay(self, now: float) -> float:
        """Seconds until the next slot is due (0 if it already is)."""
        return max(0.0, self.deadline(self.next_slot) - now)


def build_feeds(settings: DemoSettings) -> dict[str, Feed]:
    """A feed per symbol of ``settings.symbols``, in order (reads the replayed data).

    Raises:
        ConfigError: a symbol no source provides, no symbols, or a bad ``start_date``.
    """
    data = settings.data
    live = data.okx_symbols if data.source == "okx" else []
    symbols = list(dict.fromkeys(settings.symbols))
    if not symbols:
        raise ConfigError(f'demo.symbols is empty; e.g. symbols = ["AAPL", "{SIM_SYMBOLS[0]}"]')
    feeds: dict[str, Feed] = {}
    for symbol in symbols:
        if symbol in live:
            feeds[symbol] = LiveFeed()
        elif symbol in REPLAY_SYMBOLS:
            feeds[symbol] = ReplayFeed(
                symbol,
                load_bars(symbol),
                start_date=data.start_date,
                ticks_per_day=data.ticks_per_day,
                seed=data.seed,
            )
        elif symbol in SIM_SYMBOLS:
            feeds[symbol] = SimFeed(
                symbol, start_date=data.start_date, ticks_per_day=data.ticks_per_day, seed=data.seed
            )
        else:
            raise ConfigError(
                f"demo.symbols: no prices for {symbol!r}; replayed: {', '.join(REPLAY_SYMBOLS)}; "
                f"simulated: {', '.join(SIM_SYMBOLS)}; for live crypto prices set "
                f'[demo.data] source = "okx" and list it in okx_symbols'
            )
    return feeds


class DataAgent(Agent):
    """Publishes ``market.price.<SYMBOL>`` ticks (:class:`Tick`) for every demo symbol.

    Args:
        agent_id: defaults to ``"data"``.
        settings: the demo's settings; by default the ``[demo]`` section of the
            runtime's ``loom.toml``.

    Starting it raises (``LoomError``, from a ``ConfigError``) for a symbol no source
    provides or a bad ``start_date``.
    """

    id = "data"
    data: DataSettings  # set by on_start

    def __init__(self, agent_id: str | None = None, *, settings: DemoSettings | None = None):
        super().__init__(agent_id)
        self._settings = settings
        self.feeds: dict[str, Feed] = {}
        self.published: dict[str, int] = {}  # ticks per symbol, also their next seq

    async def on_start(self, ctx: Context) -> None:
        settings = self._settings or demo_settings(ctx.config)
        self.data = settings.data
        if self.data.source == "okx" and not self.data.okx_url.startswith(("ws://", "wss://")):
            raise ConfigError(
                f"demo.data.okx_url = {self.data.okx_url!r}: not a WebSocket URL; "
                'e.g. okx_url = "wss://ws.okx.com:8443/ws/v5/public"'
            )
        self.feeds = await asyncio.to_thread(build_feeds, settings)
        self.published = dict.fromkeys(self.feeds, 0)
        sources = ", ".join(f"{s} ({feed.source})" for s, feed in self.feeds.items())
        if self.data.source == "okx" and not any(
            isinstance(feed, LiveFeed) for feed in self.feeds.values()
        ):
            ctx.log.warning(
                'source "okx" but no symbol of demo.symbols is in demo.data.okx_symbols (%s): '
                "nothing streams live",
                ", ".join(self.data.okx_symbols),
            )
        ctx.log.info(
            "source %s: %s at %g ticks/s per symbol, replay from %s with %d ticks a day",
            self.data.source,
            sources,
            self.data.ticks_per_second,
            self.data.start_date,
            self.data.ticks_per_day,
        )

    async def run(self, ctx: Context) -> None:
        live = {s: feed for s, feed in self.feeds.items() if isinstance(feed, LiveFeed)}

        def on_quote(symbol: str, latest: Quote) -> None:
            if symbol in live:
                live[symbol].update(latest)
            else:
                ctx.log.warning("okx: ignored a ticker of %r, which was not subscribed", symbol)

        async with asyncio.TaskGroup() as tasks:
            if live:
                tasks.create_task(stream_okx(self.data.okx_url, list(live), on_quote, ctx.log))
            await self._publish(ctx)

    async def _publish(self, ctx: Context) -> None:
        symbols = list(self.feeds)
        schedule = Schedule(self.data.ticks_per_second * len(symbols), time.monotonic())
        while True:
            skipped = schedule.skipped
            due = schedule.take_due(time.monotonic())
            if schedule.skipped > skipped:
                ctx.log.warning(
                    "fell %d slots behind schedule (the event loop was busy); dropped them",
                    schedule.skipped - skipped,
                )
            for count, slot in enumerate(due, start=1):
                await self._publish_one(ctx, symbols[slot % len(symbols)])
                if count % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            await asyncio.sleep(schedule.delay(time.monotonic()))

    async def _publish_one(self, ctx: Context, symbol: str) -> None:
        feed = self.feeds[symbol]
        latest = feed.next_quote()
        if latest is None:
            return
        tick = Tick(
            symbol=symbol,
            price=latest.price,
            bid=latest.bid,
            ask=latest.ask,
            volume=latest.volume,
            ts=latest.ts,
            sent_ts=time.time(),
            source=feed.source,
            seq=self.published[symbol],
        )
        await ctx.emit(f"market.price.{symbol}", tick.model_dump())
        self.published[symbol] += 1
