"""The payloads the demo's agents exchange: one pydantic model per topic family.

Agents publish ``model.model_dump()`` and read ``Model.model_validate(event.data)``.
Times are epoch seconds (float). ``tick_ts`` carries the time of the price tick a
message descends from, so tick → order latency can be measured end to end.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Action = Literal["BUY", "SELL", "HOLD"]
Side = Literal["BUY", "SELL"]


class Tick(BaseModel):
    """``market.price.<SYMBOL>``: one price update."""

    symbol: str
    price: float = Field(gt=0)
    bid: float = Field(gt=0)
    ask: float = Field(gt=0)
    volume: float = Field(ge=0)
    ts: float  # when the price holds (replayed: the market's time; live: the exchange's)
    sent_ts: float  # when the data agent published it (latency measurements)
    source: Literal["replay", "sim", "okx"]
    seq: int = Field(ge=0)  # per symbol, from 0


class TrendIndicators(BaseModel):
    ema_fast: float
    ema_slow: float
    rsi: float  # 0..100
    macd: float
    macd_signal: float
    macd_hist: float
    momentum: float  # relative change over the momentum window


class Trend(BaseModel):
    """``analysis.trend.<SYMBOL>``."""

    symbol: str
    signal: Literal["bullish", "bearish", "neutral"]
    strength: float = Field(ge=0, le=1)
    price: float
    indicators: TrendIndicators
    ready: bool  # False until enough ticks were seen for the slow indicators
    tick_ts: float


class RiskLimits(BaseModel):
    max_position_notional: float  # |size| * price, per symbol
    max_leverage: float
    max_var_fraction: float  # one-tick 95 % VaR of the position / equity


class Risk(BaseModel):
    """``analysis.risk.<SYMBOL>``."""

    symbol: str
    price: float
    volatility: float  # standard deviation of tick log-returns over the window
    var_95: float  # one-tick 95 % value at risk, as a fraction of price (>= 0)
    es_95: float  # expected shortfall beyond the VaR, fraction of price (>= 0)
    drawdown: float  # from the window's peak price, fraction (>= 0)
    exposure: float  # notional of the executor's current position (signed)
    limits: RiskLimits
    allowed: bool  # False when the risk budget is spent: no new exposure
    reason: str = ""
    tick_ts: float


class Source(BaseModel):
    title: str
    url: str
    date: str
    score: float = 0.0  # sentiment of this headline, -1..1


class Sentiment(BaseModel):
    """``analysis.sentiment.<SYMBOL>``."""

    symbol: str
    score: float = Field(ge=-1, le=1)
    label: Literal["positive", "negative", "neutral"]
    method: Literal["vader", "llm"]
    backend: str  # "offline" corpus or "ddgs"
    sources: list[Source]
    error: str | None = None  # set when the search failed (score is then 0, neutral)
    fallback_reason: str | None = None  # method "llm" asked for, VADER answered: why
    tick_ts: float


class PlanDecision(BaseModel):
    """What the LLM must answer (``response_model``), and the rule planner produces."""

    action: Action
    confidence: float = Field(ge=0, le=1)
    size: float = Field(ge=0, description="units of the symbol to trade")
    leverage: float = Field(ge=1, default=1)
    limit_price: float | None = Field(default=None, description="None: a market order")
    stop_loss: float | None = None
    take_profit: float | None = None
    reasoning: str


class Plan(PlanDecision):
    """``plan.<SYMBOL>``: a decision, where it came from, what the risk checks changed."""

    id: str
    symbol: str
    source: Literal["llm", "rules"]
    model: str | None = None  # the LLM that answered, for source "llm"
    fallback_reason: str | None = None  # why the rules answered when an LLM is configured
    checks: list[str] = []  # adjustments made to respect the risk limits
    evidence: dict[str, float | str | None] = {}
    price: float
    tick_ts: float
    llm_ms: float = 0.0  # time spent waiting for the LLM (excluded from latency figures)


class Order(BaseModel):
    """``trade.order.<SYMBOL>``: every state change of an order."""

    id: str
    plan_id: str | None
    symbol: str
    side: Side
    type: Literal["market", "limit"]
    size: float = Field(ge=0)  # as asked: > 0 unless the order was rejected
    limit_price: float | None = None
    leverage: float = 1.0
    stop_loss: float | None = None
    take_profit: float | None = None
    status: Literal["new", "filled", "cancelled", "rejected"]
    reason: str = ""
    ts: float
    tick_ts: float | None = None


class Fill(BaseModel):
    """``trade.fill.<SYMBOL>``."""

    order_id: str
    symbol: str
    side: Side
    size: float
    price: float
    fee: float
    liquidity: Literal["taker", "maker"]
    ts: float


class Position(BaseModel):
    """``trade.position.<SYMBOL>``: after every fill and on every mark-to-market tick."""

    symbol: str
    size: float  # signed: > 0 long, < 0 short, 0 flat
    entry_price: float | None
    mark_price: float
    leverage: float
    margin: float
    liquidation_price: float | None
    stop_loss: float | None
    take_profit: float | None
    unrealized_pnl: float
    realized_pnl: float
    fees: float
    closed_reason: Literal["stop_loss", "take_profit", "liquidation", "signal"] | None = None
    ts: float
