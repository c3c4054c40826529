"""The sentiment agent on a real runtime, with the real ``web-search`` MCP server over stdio."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from demo.market_analyst.schemas import Sentiment, Tick
from demo.market_analyst.sentiment import SentimentAgent
from loom_kernel import Runtime, Subscription, open_runtime
from loom_kernel.config import parse_config
from tests.conftest import REPO
from tests.support.openai_server import OpenAIServer, Reply

pytestmark = pytest.mark.timeout(60)

SERVER = {
    "command": "python",
    "args": ["-m", "demo.market_analyst.search_server"],
    "cwd": str(REPO),
}
BROKEN = {**SERVER, "args": ["-m", "demo.market_analyst.no_such_module"], "max_restarts": 50}
MARKET_DAY = "2012-06-29"
MARKET_TS = dt.datetime(2012, 6, 29, 15, 30, tzinfo=dt.UTC).timestamp()  # 11:30 New York


def tick(seq: int, symbol: str = "AAPL", source: str = "replay", ts: float = MARKET_TS) -> dict:
    return Tick(
        symbol=symbol,
        price=100.0,
        bid=99.99,
        ask=100.01,
        volume=10.0,
        ts=ts,
        sent_ts=5_000.0 + seq,
        source=source,
        seq=seq,
    ).model_dump()


@contextlib.asynccontextmanager
async def running(
    project: Path, sentiment: dict[str, Any] | None = None, server: dict | None = None, **more: Any
) -> AsyncIterator[tuple[Runtime, Subscription]]:
    """A runtime with ``[mcp.web-search]``, the sentiment agent, and its output subscribed."""
    raw = {
        "runtime": {"heartbeat_interval": 0.2},
        "mcp": {"web-search": server or SERVER},
        "demo": {"sentiment": {"refresh_sec": 60, **(sentiment or {})}},
        **more,
    }
    rt = await open_runtime(parse_config(raw, path=project / "loom.toml"))
    try:
        out = await rt.subscribe("analysis.sentiment.*")
        await rt.start(SentimentAgent())
        yield rt, out
    finally:
        await rt.aclose()


async def sentiment_of(rt: Runtime, out: Subscription, data: dict) -> Sentiment:
    """Publish one tick, return the sentiment published for it."""
    await rt.emit(f"market.price.{data['symbol']}", data)
    event = await out.get(timeout=15)  # the first search starts the MCP server
    sentiment = Sentiment.model_validate(event.data)
    assert sentiment.tick_ts == data["sent_ts"]
    return sentiment


async def vader_mean(rt: Runtime, symbol: str = "AAPL", before: str = MARKET_DAY) -> float:
    """What VADER makes of the headlines the agent's search finds, computed here."""
    args = {"query": f"{symbol} stock news", "symbol": symbol, "limit": 5, "before": before}
    hits = await rt.tool("web-search", args)
    analyzer = SentimentIntensityAnalyzer()
    scores = [analyzer.polarity_scores(f"{h['title']}. {h['snippet']}")["compound"] for h in hits]
    return sum(scores) / len(scores)


def searches(rt: Runtime) -> int:
    return rt.actions.servers["web-search"].statistics().calls


async def test_a_tick_gets_a_vader_sentiment_of_the_headlines_found(project: Path) -> None:
    async with running(project) as (rt, out):
        sentiment = await sentiment_of(rt, out, tick(0))
        assert (sentiment.symbol, sentiment.method, sentiment.error) == ("AAPL", "vader", None)
        assert sentiment.backend == "offline"
        assert len(sentiment.sources) == 5
        assert all(s.url.startswith("https://news.example/aapl/") for s in sentiment.sources)
        assert sentiment.score == pytest.approx(await vader_mean(rt), abs=1e-3)
        assert sentiment.score != 0
        assert sentiment.label == ("positive" if sentiment.score > 0 else "negative")


async def test_replayed_ticks_see_news_up_to_their_market_day_live_ones_all(
    project: Path,
) -> None:
    async with running(project, {"refresh_sec": 0}) as (rt, out):
        early = dt.datetime(2011, 5, 1, 15, tzinfo=dt.UTC).timestamp()
        replayed = await sentiment_of(rt, out, tick(0, ts=early))
        assert replayed.sources and all(s.date <= "2011-05-01" for s in replayed.sources)
        live = await sentiment_of(rt, out, tick(1, source="okx", ts=early))
        assert max(s.date for s in live.sources) == "2013-12-23"  # the newest AAPL headline


async def test_one_search_per_symbol_within_refresh_sec(project: Path) -> None:
    async with running(project, {"refresh_sec": 60}) as (rt, out):
        first = await sentiment_of(rt, out, tick(0))
        again = [await sentiment_of(rt, out, tick(seq)) for seq in (1, 2, 3)]
        assert searches(rt) == 1
        assert {(s.score, len(s.sources)) for s in again} == {(first.score, 5)}
        other = await sentiment_of(rt, out, tick(4, symbol="BTC-USDT", source="sim"))
        assert other.symbol == "BTC-USDT" and other.sources
        assert searches(rt) == 2


async def test_a_broken_search_server_gives_neutral_scores_with_an_error(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "loom.agent.sentiment")
    async with running(project, {"refresh_sec": 0}, BROKEN) as (rt, out):
        for seq in range(3):
            sentiment = await sentiment_of(rt, out, tick(seq))
            assert (sentiment.score, sentiment.label, sentiment.sources) == (0, "neutral", [])
            assert sentiment.error is not None
            assert sentiment.error.startswith("search failed: MCP server 'web-search' failed")
            assert "No module named demo.market_analyst.no_such_module" in sentiment.error
        stats = rt.agents["sentiment"].statistics()
        assert (stats.handled, stats.errors) == (3, 0)
        assert rt.status("sentiment") in ("running", "idle")
        assert rt.actions.servers["web-search"].statistics().restarts >= 2  # tried each time
    warnings = [r for r in caplog.records if r.name == "loom.agent.sentiment"]
    assert len(warnings) == 3 and "AAPL: search failed" in warnings[0].getMessage()


# -- method = "llm", against a real local OpenAI-compatible server ----------------------


@pytest.fixture
def llm_server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as server:
        yield server


def llm_config(server: OpenAIServer) -> dict[str, Any]:
    return {"news": {"model": "openai/loom-test", "api_base": server.url, "timeout_sec": 5}}


async def test_llm_method_takes_the_models_score(project: Path, llm_server: OpenAIServer) -> None:
    llm_server.push(Reply(content='{"score": 0.7}'))
    settings = {"method": "llm", "llm": "news"}
    async with running(project, settings, llm=llm_config(llm_server)) as (rt, out):
        sentiment = await sentiment_of(rt, out, tick(0))
    assert (sentiment.method, sentiment.score, sentiment.label) == ("llm", 0.7, "positive")
    assert sentiment.error is None and len(sentiment.sources) == 5
    prompt = llm_server.requests[0]["messages"][-1]["content"]
    assert prompt.startswith("Symbol: AAPL")
    assert all(source.title in prompt for source in sentiment.sources)


async def test_an_llm_failure_falls_back_to_vader_and_says_so(
    project: Path, llm_server: OpenAIServer
) -> None:
    llm_server.push(Reply(status=500, error_message="model overloaded"))
    settings = {"method": "llm", "llm": "news"}
    async with running(project, settings, llm=llm_config(llm_server)) as (rt, out):
        sentiment = await sentiment_of(rt, out, tick(0))
        assert sentiment.method == "vader"
        assert sentiment.error is None  # the search worked: only the scoring fell back
        assert sentiment.fallback_reason.startswith("llm fallback to VADER: [llm.news]")
        assert sentiment.score == pytest.approx(await vader_mean(rt), abs=1e-3)
