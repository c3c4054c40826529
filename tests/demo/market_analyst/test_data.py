"""The data agent: intraday replay, simulation, pacing, and the OKX feed on a local server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from demo.market_analyst import okx
from demo.market_analyst.data import (
    GBM,
    Bar,
    DataAgent,
    ReplayFeed,
    Schedule,
    SimFeed,
    day_ticks,
    intraday_prices,
    intraday_volumes,
    load_bars,
    session_times,
)
from demo.market_analyst.okx import okx_quotes, stream_okx
from demo.market_analyst.quotes import Quote
from demo.market_analyst.schemas import Tick
from demo.market_analyst.settings import demo_settings
from loom_kernel import Runtime, Subscription, open_runtime
from loom_kernel.config import parse_config
from loom_kernel.errors import ConfigError, LoomError
from tests.conftest import free_port, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local WebSocket servers are reached directly, whatever proxy the machine sets."""
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


JAN_3 = Bar("2012-01-03", open=409.4, high=412.5, low=409.0, close=411.23, volume=10_793_600.0)


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


# -- the intraday path ------------------------------------------------------------------


@st.composite
def bars(draw: st.DrawFn) -> Bar:
    low = draw(st.floats(0.5, 5_000))
    high = low * (1 + draw(st.floats(1e-4, 0.5)))
    # the open and close sit on the bounds often: those are the cases with edges
    at = st.sampled_from([0.0, 1.0]) | st.floats(0, 1)
    open_, close = (min(max(low + (high - low) * draw(at), low), high) for _ in range(2))
    return Bar("2012-06-01", open_, high, low, close, draw(st.floats(0, 1e9)))


@settings(max_examples=300, deadline=None)
@given(bar=bars(), n=st.integers(4, 400), seed=st.integers(0, 2**32))
def test_intraday_path_runs_open_to_close_and_touches_high_and_low_once_inside_them(
    bar: Bar, n: int, seed: int
):
    path = intraday_prices(bar, n, random.Random(seed))
    assert len(path) == n
    assert path[0] == bar.open
    assert path[-1] == bar.close
    assert all(bar.low <= p <= bar.high for p in path)
    # once, except where the open and the close both sit on the bound
    assert path.count(bar.high) == max(1, (bar.open == bar.high) + (bar.close == bar.high))
    assert path.count(bar.low) == max(1, (bar.open == bar.low) + (bar.close == bar.low))


def test_every_real_day_of_aapl_replays_within_its_bar():
    for bar in load_bars("AAPL"):
        path = [q.price for q in day_ticks("AAPL", bar, 78, seed=7)]
        assert (path[0], path[-1], min(path), max(path)) == (
            bar.open,
            bar.close,
            bar.low,
            bar.high,
        )


def test_a_flat_bar_gives_a_flat_path_and_a_bad_bar_is_refused():
    flat = Bar("2012-06-01", 10.0, 10.0, 10.0, 10.0, 100.0)
    assert intraday_prices(flat, 5, random.Random(1)) == [10.0] * 5
    with pytest.raises(ValueError, match="low <= open"):
        intraday_prices(Bar("2012-06-01", 9.0, 10.0, 9.5, 9.8, 1.0), 5, random.Random(1))
    with pytest.raises(ValueError, match="at least 4"):
        intraday_prices(JAN_3, 3, random.Random(1))


def test_same_seed_gives_the_same_ticks_and_another_seed_or_symbol_differs():
    ticks = day_ticks("AAPL", JAN_3, 78, seed=7)
    assert ticks == day_ticks("AAPL", JAN_3, 78, seed=7)
    assert ticks != day_ticks("AAPL", JAN_3, 78, seed=8)
    assert [q.price for q in ticks] != [q.price for q in day_ticks("MSFT", JAN_3, 78, seed=7)]


def test_volume_is_split_u_shaped_and_sums_to_the_days_volume():
    volumes = intraday_volumes(1_000_000.0, 390, random.Random(3))
    assert sum(volumes) == pytest.approx(1_000_000.0)
    assert all(v > 0 for v in volumes)
    ends = sum(volumes[:40]) + sum(volumes[-40:])
    middle = sum(volumes[175:255])
    assert ends > 2 * middle


def test_ticks_span_the_new_york_session_in_winter_and_summer():
    winter, summer = session_times("2012-01-03", 78), session_times("2012-07-02", 78)
    assert (utc(winter[0]), utc(winter[-1])) == ("2012-01-03 14:30", "2012-01-03 21:00")
    assert (utc(summer[0]), utc(summer[-1])) == ("2012-07-02 13:30", "2012-07-02 20:00")
    assert winter == sorted(winter)


def test_ticks_carry_a_one_basis_point_spread():
    tick = day_ticks("AAPL", JAN_3, 10, seed=1)[4]
    assert tick.bid < tick.price < tick.ask
    assert (tick.ask - tick.bid) / tick.price == pytest.approx(1e-4)


# -- the replay feed ----------------------------------------------------------------------


def test_replay_starts_at_start_date_and_wraps_back_to_it_after_the_last_day():
    aapl = load_bars("AAPL")
    assert aapl[-1].date == "2013-03-01"
    feed = ReplayFeed("AAPL", aapl, start_date="2013-02-27", ticks_per_day=4, seed=7)
    ticks = [feed.next_quote() for _ in range(3 * 4 + 5)]
    days = [utc(q.ts)[:10] for q in ticks]
    assert days == ["2013-02-27"] * 4 + ["2013-02-28"] * 4 + ["2013-03-01"] * 4 + [
        "2013-02-27"
    ] * 4 + ["2013-02-28"]
    assert ticks[12:16] == ticks[:4]  # the same day replays the same way
    assert ticks[0].price == aapl[-3].open
    assert ticks[11].price == aapl[-1].close


def test_replay_start_date_between_trading_days_takes_the_next_one():
    feed = ReplayFeed("IBM", load_bars("IBM"), start_date="2012-01-01", ticks_per_day=4, seed=7)
    assert utc(feed.next_quote().ts).startswith("2012-01-03")


@pytest.mark.parametrize(
    ("start_date", "message"),
    [("2014-01-02", "data ends on 2013-03-01"), ("3 Jan 2012", "YYYY-MM-DD")],
)
def test_a_bad_start_date_is_a_config_error_naming_the_key(start_date: str, message: str):
    with pytest.raises(ConfigError, match=message) as caught:
        ReplayFeed("AAPL", load_bars("AAPL"), start_date=start_date, ticks_per_day=4, seed=7)
    assert "demo.data.start_date" in str(caught.value)


# -- simulation -------------------------------------------------------------------------


def test_gbm_stays_positive_jumps_and_is_seeded():
    def path(seed: int) -> tuple[list[float], int]:
        gbm = GBM(
            100.0,
            volatility=3.0,
            dt=1 / 365,
            rng=random.Random(seed),
            jumps_per_year=50,
            jump_size=0.5,
        )
        return [gbm.step() for _ in range(20_000)], gbm.jumps

    prices, jumps = path(1)
    assert min(prices) > 0
    assert jumps > 100
    assert path(1) == (prices, jumps)
    assert path(2)[0] != prices


def test_gbm_refuses_a_non_positive_start():
    with pytest.raises(ValueError, match="start > 0"):
        GBM(0.0, volatility=0.5, dt=0.01, rng=random.Random(1))


def test_sim_feed_starts_at_43000_at_midnight_utc_and_advances_a_day_per_ticks_per_day():
    feed = SimFeed("BTC-USDT", start_date="2012-01-03", ticks_per_day=48, seed=7)
    ticks = [feed.next_quote() for _ in range(49)]
    assert ticks[0].price == 43_000.0
    assert (utc(ticks[0].ts), utc(ticks[48].ts)) == ("2012-01-03 00:00", "2012-01-04 00:00")
    assert len({q.price for q in ticks}) == 49
    again = SimFeed("BTC-USDT", start_date="2012-01-03", ticks_per_day=48, seed=7)
    assert [again.next_quote() for _ in range(49)] == ticks


# -- pacing -------------------------------------------------------------------------------


def test_schedule_deadlines_do_not_drift_and_a_stall_drops_the_backlog():
    schedule = Schedule(10.0, start=100.0, max_lag=1.0)
    assert schedule.take_due(100.0) == range(0, 1)
    assert schedule.take_due(100.05) == range(1, 1)
    assert schedule.delay(100.05) == pytest.approx(0.05)
    assert schedule.take_due(100.35) == range(1, 4)  # late wake-ups catch up
    assert schedule.take_due(200.0) == range(4, 5)  # a 100 s stall is not burst out
    assert schedule.skipped == pytest.approx(996, abs=1)
    assert schedule.take_due(200.25) == range(5, 7)
    assert schedule.deadline(1_000_004) == pytest.approx(200.0 + 100_000)


# -- OKX messages ------------------------------------------------------------------------


def ticker(inst: str, last: float, **fields: str) -> dict[str, Any]:
    item = {
        "instId": inst,
        "last": str(last),
        "bidPx": str(last - 0.5),
        "askPx": str(last + 0.5),
        "vol24h": "1234.5",
        "lastSz": "0.25",
        "ts": str(int(time.time() * 1000)),
        **fields,
    }
    return {"arg": {"channel": "tickers", "instId": inst}, "data": [item]}


def test_okx_ticker_pushes_become_quotes_and_events_none():
    message = ticker("BTC-USDT", 43_000.5, ts="1700000000123")
    assert okx_quotes(message) == [
        ("BTC-USDT", Quote(43_000.5, 43_000.0, 43_001.0, 0.25, 1_700_000_000.123))
    ]
    assert okx_quotes({"event": "subscribe", "arg": {"channel": "tickers"}}) == []
    bare = okx_quotes(ticker("ETH-USDT", 2_000.0, bidPx="", askPx="", lastSz=""))[0][1]
    assert bare.bid < 2_000.0 < bare.ask
    assert bare.volume == 0.0


# -- through a runtime ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def demo_runtime(project: Path, demo: dict[str, Any]) -> AsyncIterator[Runtime]:
    raw = {"runtime": {"heartbeat_interval": 0.2}, "demo": demo}
    async with open_runtime(parse_config(raw, path=project / "loom.toml")) as runtime:
        yield runtime


async def collect(sub: Subscription, seconds: float) -> list[Tick]:
    ticks = []
    deadline = time.monotonic() + seconds
    with contextlib.suppress(TimeoutError):
        while (left := deadline - time.monotonic()) > 0:
            ticks.append(Tick.model_validate((await sub.get(timeout=left)).data))
    return ticks


def by_symbol(ticks: list[Tick]) -> dict[str, list[Tick]]:
    grouped = defaultdict(list)
    for tick in ticks:
        grouped[tick.symbol].append(tick)
    return grouped


async def test_agent_publishes_ticks_for_every_symbol_at_the_rate_with_consecutive_seq(
    project: Path,
):
    demo = {"symbols": ["AAPL", "BTC-USDT"], "data": {"ticks_per_second": 50}}
    async with demo_runtime(project, demo) as rt:
        sub = await rt.subscribe("market.price.*")
        logs = await rt.subscribe("loom.log.data")
        started = time.monotonic()
        await rt.start(DataAgent())
        ticks = await collect(sub, 1.0)
        elapsed = time.monotonic() - started
        await rt.stop("data")
        start_line = (await logs.get(timeout=5)).data["message"]

    grouped = by_symbol(ticks)
    assert set(grouped) == {"AAPL", "BTC-USDT"}
    for symbol, source in (("AAPL", "replay"), ("BTC-USDT", "sim")):
        mine = grouped[symbol]
        assert [t.seq for t in mine] == list(range(len(mine)))
        assert {t.source for t in mine} == {source}
        assert 0.5 * 50 * elapsed <= len(mine) <= 1.5 * 50 * elapsed + 2, len(mine)
    assert utc(grouped["AAPL"][0].ts) == "2012-01-03 14:30"
    assert grouped["AAPL"][0].price == JAN_3.open
    assert all(t.sent_ts >= t.ts for t in ticks)
    assert "AAPL (replay), BTC-USDT (sim) at 50 ticks/s" in start_line


async def test_a_symbol_without_prices_fails_the_start_and_names_the_fix(rt: Runtime):
    agent = DataAgent(settings=demo_settings({"symbols": ["AAPL", "TSLA"]}))
    with pytest.raises(LoomError, match=r"no prices for 'TSLA'.*source = \"okx\""):
        await rt.start(agent)


# -- OKX against a local WebSocket server ---------------------------------------------------


class FakeOkx:
    """OKX's public endpoint, as far as the data agent uses it."""

    def __init__(
        self, *, close_first_after: int = 0, pong: bool = True, send: bool = True, refuse: int = 0
    ):
        self.close_first_after, self.pong, self.send = close_first_after, pong, send
        self.refuse = refuse  # connections closed before any data, from the first
        self.connections = 0
        self.subscriptions: list[dict[str, Any]] = []
        self.pings: list[int] = []  # the connection each "ping" came on

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        connection = self.connections
        with contextlib.suppress(ConnectionClosed):
            request = json.loads(await ws.recv())
            self.subscriptions.append(request)
            if connection <= self.refuse:
                await ws.close(1011, "try again later")
                return
            for arg in request["args"]:
                await ws.send(json.dumps({"event": "subscribe", "arg": arg, "connId": "c1"}))
            pinger = asyncio.create_task(self.answer_pings(ws, connection))
            try:
                await self.push(ws, connection, request["args"])
            finally:
                pinger.cancel()

    async def push(self, ws: ServerConnection, connection: int, args: list[dict]) -> None:
        if not self.send:
            await ws.wait_closed()
            return
        for n in range(1, 10_000):
            for arg in args:
                # the price tells which connection a tick came on
                await ws.send(json.dumps(ticker(arg["instId"], 1000 * connection + n)))
            if connection == self.refuse + 1 and n == self.close_first_after:
                await ws.close()
                return
            await asyncio.sleep(0.02)

    async def answer_pings(self, ws: ServerConnection, connection: int) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                if message == "ping":
                    self.pings.append(connection)
                    if self.pong:
                        await ws.send("pong")


@contextlib.asynccontextmanager
async def okx_server(fake: FakeOkx) -> AsyncIterator[str]:
    async with serve(fake.handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws/v5/public"


async def test_okx_mode_streams_live_ticks_and_reconnects_when_the_server_closes(
    project: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(okx, "RECONNECT_MIN", 0.05)
    fake = FakeOkx(close_first_after=5)
    async with okx_server(fake) as url:
        demo = {
            "symbols": ["AAPL", "BTC-USDT"],
            "data": {
                "source": "okx",
                "okx_url": url,
                "okx_symbols": ["BTC-USDT"],
                "ticks_per_second": 50,
            },
        }
        async with demo_runtime(project, demo) as rt:
            sub = await rt.subscribe("market.price.*")
            logs = await rt.subscribe("loom.log.data")
            await rt.start(DataAgent())
            ticks: list[Tick] = []

            async def second_connection_ticks() -> None:
                while not any(t.symbol == "BTC-USDT" and t.price > 2000 for t in ticks):
                    ticks.append(Tick.model_validate((await sub.get(timeout=5)).data))

            await asyncio.wait_for(second_connection_ticks(), 10)
            await rt.stop("data")
            messages = []
            with contextlib.suppress(TimeoutError):
                while True:
                    messages.append((await logs.get(timeout=0.2)).data)

    assert fake.connections >= 2
    assert fake.subscriptions[0] == {
        "op": "subscribe",
        "args": [{"channel": "tickers", "instId": "BTC-USDT"}],
    }
    grouped = by_symbol(ticks)
    btc = grouped["BTC-USDT"]
    assert {t.source for t in btc} == {"okx"}
    assert {t.source for t in grouped["AAPL"]} == {"replay"}
    assert [t.seq for t in btc] == list(range(len(btc)))
    assert any(1000 < t.price < 2000 for t in btc)  # from the first connection
    assert all(t.bid == t.price - 0.5 and t.volume == 0.25 for t in btc)
    warnings = [m["message"] for m in messages if m["level"] == "WARNING"]
    assert any(
        "okx: disconnected from ws://127.0.0.1" in w and "reconnecting in 0.05 s" in w
        for w in warnings
    ), messages


async def test_okx_keepalive_pings_a_quiet_server_and_drops_it_when_pongs_stop(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(okx, "KEEPALIVE", 0.1)
    monkeypatch.setattr(okx, "RECONNECT_MIN", 0.01)
    quiet, dead = FakeOkx(send=False), FakeOkx(send=False, pong=False)
    for fake, expect_reconnect in ((quiet, False), (dead, True)):
        async with okx_server(fake) as url:
            task = asyncio.create_task(stream_okx(url, ["BTC-USDT"], lambda s, q: None))
            try:
                await wait_until(lambda fake=fake: len(fake.pings) >= 3)
                if expect_reconnect:
                    await wait_until(lambda fake=fake: fake.connections >= 2)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        assert (fake.connections > 1) == expect_reconnect, fake.connections


async def test_okx_reconnect_backoff_doubles_up_to_its_maximum(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setattr(okx, "RECONNECT_MIN", 0.01)
    monkeypatch.setattr(okx, "RECONNECT_MAX", 0.04)
    caplog.set_level(logging.WARNING, logger=okx.log.name)
    url = f"ws://127.0.0.1:{free_port()}/"  # nobody listens
    task = asyncio.create_task(stream_okx(url, ["BTC-USDT"], lambda s, q: None))
    try:
        await wait_until(lambda: len(caplog.records) >= 5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    delays = [r.getMessage().rsplit("reconnecting in ", 1)[1] for r in caplog.records[:5]]
    assert delays == ["0.01 s", "0.02 s", "0.04 s", "0.04 s", "0.04 s"]
    assert "ConnectionRefusedError" in caplog.records[0].getMessage()


async def test_okx_backoff_starts_afresh_after_a_connection_that_delivered(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setattr(okx, "RECONNECT_MIN", 0.01)
    caplog.set_level(logging.WARNING, logger=okx.log.name)
    fake = FakeOkx(refuse=2, close_first_after=3)
    received: list[Quote] = []
    async with okx_server(fake) as url:
        task = asyncio.create_task(stream_okx(url, ["BTC-USDT"], lambda s, q: received.append(q)))
        try:
            await wait_until(lambda: fake.connections >= 4)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    delays = [r.getMessage().rsplit("reconnecting in ", 1)[1] for r in caplog.records[:3]]
    assert delays == ["0.01 s", "0.02 s", "0.01 s"]  # refused, refused, closed after data
    assert "1011" in caplog.records[0].getMessage()
    assert [q.price for q in received[:3]] == [3001.0, 3002.0, 3003.0]
