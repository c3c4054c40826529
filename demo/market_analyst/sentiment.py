"""The sentiment agent: news headlines scored into ``analysis.sentiment.<SYMBOL>``.

For every ``market.price.<SYMBOL>`` tick (:class:`Tick`) it publishes a
:class:`Sentiment`, so the planner's fan-in always finds one for the tick (``tick_ts`` is
the tick's ``sent_ts``). The news behind it is searched again at most every
``refresh_sec`` seconds of wall time per symbol, through the ``web-search`` MCP tool
(``search_server.py``), and scored:

- ``method = "vader"``: each headline's title and snippet get VADER's compound score;
  the symbol's score is their mean.
- ``method = "llm"``: the ``[llm.<llm>]`` model rates the headlines as a whole, in
  [-1, 1]. When it fails, VADER scores them and ``fallback_reason`` says why (``method`` is then
  ``"vader"``, the method that produced the score).

Replayed and simulated ticks carry a market clock: the search only sees headlines dated
on or before the tick's market day. A failed search (server down, timeout) publishes a
neutral 0 with ``error`` set until the next refresh, which tries again.
Settings: ``[demo.sentiment]`` (:class:`SentimentSettings`).
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from loom_kernel import Agent, Context, Envelope, LLMError, ToolError, on_event

from .schemas import Sentiment, Source, Tick
from .settings import SentimentSettings, demo_settings

__all__ = ["SentimentAgent", "label", "market_day", "vader_score"]

NEUTRAL_BAND = 0.05  # VADER's usual threshold: |score| below it is neutral
LIVE_SOURCES = frozenset({"okx"})  # ticks of now: no date filter on the news

SYSTEM = (
    "You rate financial news for one traded symbol. Read the headlines and answer how "
    "they bear on the symbol's price: score -1 is very negative, 0 neutral or unclear, "
    "1 very positive."
)


class Headline(BaseModel):
    """What the agent needs of one search result (other keys are ignored)."""

    model_config = ConfigDict(extra="ignore")

    title: str
    url: str
    date: str = ""
    snippet: str = ""


HEADLINES = TypeAdapter(list[Headline])


class NewsScore(BaseModel):
    """The LLM's answer."""

    score: float = Field(ge=-1, le=1, description="-1 very negative .. 1 very positive")


@functools.cache
def _analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()  # reads its lexicon file once


def vader_score(text: str) -> float:
    """VADER's compound score of ``text``, in [-1, 1]."""
    return float(_analyzer().polarity_scores(text)["compound"])


def label(score: float) -> str:
    """``positive``, ``negative`` or ``neutral`` (within ±0.05)."""
    if score >= NEUTRAL_BAND:
        return "positive"
    if score <= -NEUTRAL_BAND:
        return "negative"
    return "neutral"


def market_day(ts: float) -> str:
    """The UTC ``YYYY-MM-DD`` of a tick's market time."""
    return dt.datetime.fromtimestamp(ts, tz=dt.UTC).date().isoformat()


@dataclass(frozen=True)
class Reading:
    """One refresh of a symbol: what every tick publishes until the next one."""

    score: float
    method: str
    sources: list[Source]
    error: str | None
    at: float  # time.monotonic() of the refresh
    fallback_reason: str | None = None


class SentimentAgent(Agent):
    """Publishes ``analysis.sentiment.<SYMBOL>`` for every ``market.price.<SYMBOL>`` tick.

    Args:
        agent_id: defaults to ``"sentiment"``.
        settings: defaults to ``[demo.sentiment]`` of the runtime's ``loom.toml``.
    """

    id = "sentiment"

    def __init__(self, agent_id: str | None = None, settings: SentimentSettings | None = None):
        super().__init__(agent_id)
        self._settings = settings
        self.readings: dict[str, Reading] = {}

    async def on_start(self, ctx: Context) -> None:
        # A bad [demo.sentiment] fails the start rather than the first tick.
        self._sentiment_settings(ctx)
        _analyzer()

    @on_event("market.price.*", qos="realtime")
    async def on_price(self, event: Envelope, ctx: Context) -> None:
        tick = Tick.model_validate(event.data)
        settings = self._sentiment_settings(ctx)
        reading = self.readings.get(tick.symbol)
        if reading is None or time.monotonic() - reading.at >= settings.refresh_sec:
            reading = self.readings[tick.symbol] = await self._refresh(ctx, tick, settings)
        sentiment = Sentiment(
            symbol=tick.symbol,
            score=reading.score,
            label=label(reading.score),
            method=reading.method,
            backend=settings.backend,
            sources=reading.sources,
            error=reading.error,
            fallback_reason=reading.fallback_reason,
            tick_ts=tick.sent_ts,
        )
        await ctx.emit(f"analysis.sentiment.{tick.symbol}", sentiment.model_dump())

    async def _refresh(self, ctx: Context, tick: Tick, settings: SentimentSettings) -> Reading:
        try:
            hits = await self._search(ctx, tick, settings)
        except (ToolError, ValidationError) as exc:
            error = f"search failed: {_brief(exc)}"
            ctx.log.warning(
                "%s: %s; neutral until the next search in %g s",
                tick.symbol,
                error,
                settings.refresh_sec,
            )
            return Reading(0.0, settings.method, [], error, time.monotonic())
        sources = [
            Source(
                title=hit.title,
                url=hit.url,
                date=hit.date,
                score=round(vader_score(f"{hit.title}. {hit.snippet}"), 4),
            )
            for hit in hits
        ]
        vader = round(sum(s.score for s in sources) / len(sources), 4) if sources else 0.0
        if settings.method == "vader" or not sources:
            return Reading(vader, settings.method, sources, None, time.monotonic())
        try:
            score = await self._ask_llm(ctx, tick.symbol, hits, settings.llm)
        except LLMError as exc:
            reason = f"llm fallback to VADER: {_brief(exc)}"
            ctx.log.warning("%s: %s", tick.symbol, reason)
            return Reading(vader, "vader", sources, None, time.monotonic(), reason)
        return Reading(round(score, 4), "llm", sources, None, time.monotonic())

    async def _search(
        self, ctx: Context, tick: Tick, settings: SentimentSettings
    ) -> list[Headline]:
        args: dict[str, object] = {
            "query": f"{tick.symbol} stock news",
            "symbol": tick.symbol,
            "limit": settings.results,
        }
        if tick.source not in LIVE_SOURCES:
            args["before"] = market_day(tick.ts)
        return HEADLINES.validate_python(await ctx.tool(settings.tool, args))

    async def _ask_llm(self, ctx: Context, symbol: str, hits: list[Headline], llm: str) -> float:
        lines = "\n".join(
            f"{n}. [{hit.date}] {hit.title}. {hit.snippet}" for n, hit in enumerate(hits, 1)
        )
        prompt = f"Symbol: {symbol}\nHeadlines:\n{lines}"
        answer = await ctx.llm(llm).structured(prompt, NewsScore, system=SYSTEM)
        return answer.score

    def _sentiment_settings(self, ctx: Context) -> SentimentSettings:
        # Read lazily as well as in on_start: the consumer of a subscription may run
        # before on_start has finished.
        if self._settings is None:
            self._settings = demo_settings(ctx.config).sentiment
        return self._settings


def _brief(exc: Exception, size: int = 300) -> str:
    """The error's message on one line, cut to ``size`` characters (it rides every tick)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= size else text[: size - 1] + "…"
