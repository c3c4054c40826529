"""The ``[demo]`` section of ``loom.toml``: the Market Analyst's settings, typed.

Every key is optional; a bad one raises ``ConfigError`` naming it, like the rest of
``loom.toml``::

    [demo]
    symbols = ["AAPL", "GOOG", "IBM", "MSFT", "BTC-USDT"]

    [demo.data]
    source = "replay"        # or "okx": live public tickers (network)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from loom_kernel import ConfigError, LoomConfig

REPLAY_SYMBOLS = ("AAPL", "GOOG", "IBM", "MSFT")
SIM_SYMBOLS = ("BTC-USDT",)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSettings(_Section):
    source: Literal["replay", "okx"] = "replay"
    ticks_per_second: float = Field(default=5.0, gt=0, le=10_000, description="Per symbol.")
    ticks_per_day: int = Field(
        default=78,
        ge=4,
        le=10_000,
        description="Intraday ticks per daily bar (78 = 5-minute bars).",
    )
    start_date: str = Field(default="2012-01-03", description="First replayed trading day.")
    seed: int = 7
    okx_url: str = "wss://ws.okx.com:8443/ws/v5/public"
    okx_symbols: list[str] = ["BTC-USDT", "ETH-USDT"]


class TrendSettings(_Section):
    ema_fast: int = Field(default=12, ge=2)
    ema_slow: int = Field(default=26, ge=3)
    macd_signal: int = Field(default=9, ge=2)
    rsi_period: int = Field(default=14, ge=2)
    momentum_window: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _fast_before_slow(self) -> TrendSettings:
        if self.ema_fast >= self.ema_slow:
            raise ValueError(f"ema_fast ({self.ema_fast}) must be below ema_slow ({self.ema_slow})")
        return self


class RiskSettings(_Section):
    window: int = Field(default=100, ge=10, description="Ticks in the rolling window.")
    max_position_notional: float = Field(default=100_000.0, gt=0)
    max_leverage: float = Field(default=5.0, ge=1)
    max_var_fraction: float = Field(default=0.02, gt=0, le=1)


class SentimentSettings(_Section):
    backend: Literal["offline", "ddgs"] = "offline"
    method: Literal["vader", "llm"] = "vader"
    llm: str = "deepseek"
    refresh_sec: float = Field(default=30.0, ge=0, description="Search again after this long.")
    results: int = Field(default=5, ge=1, le=50)
    tool: str = "web-search"


class PlannerSettings(_Section):
    llm: str | None = Field(default="deepseek", description="[llm.*] entry; unset: rules only.")
    plan_every_sec: float = Field(default=2.0, ge=0, description="Per symbol, at most.")
    fan_in_timeout: float = Field(default=1.0, gt=0)
    duplicate_window_sec: float = Field(default=300.0, ge=0)
    decision_ttl_sec: float = Field(
        default=3600.0, gt=0, description="Decisions leave the memory after this long."
    )
    min_confidence: float = Field(default=0.55, ge=0, le=1)
    order_notional: float = Field(default=20_000.0, gt=0, description="Size of a new position.")
    stop_loss_pct: float = Field(default=0.02, gt=0, lt=1)
    take_profit_pct: float = Field(default=0.04, gt=0)

    @model_validator(mode="after")
    def _decisions_outlive_the_window(self) -> PlannerSettings:
        if self.decision_ttl_sec < self.duplicate_window_sec:
            raise ValueError(
                f"decision_ttl_sec ({self.decision_ttl_sec:g}) must be at least "
                f"duplicate_window_sec ({self.duplicate_window_sec:g}): the flip-flop check "
                "reads the decisions of that window"
            )
        return self


class ExecutorSettings(_Section):
    cash: float = Field(default=1_000_000.0, gt=0)
    taker_fee: float = Field(default=0.0005, ge=0, lt=0.1)
    maker_fee: float = Field(default=0.0002, ge=0, lt=0.1)
    maintenance_margin: float = Field(default=0.005, gt=0, lt=1)
    exchange: Literal["paper", "okx-demo"] = "paper"


class DemoSettings(_Section):
    symbols: list[str] = [*REPLAY_SYMBOLS, *SIM_SYMBOLS]
    data: DataSettings = DataSettings()
    trend: TrendSettings = TrendSettings()
    risk: RiskSettings = RiskSettings()
    sentiment: SentimentSettings = SentimentSettings()
    planner: PlannerSettings = PlannerSettings()
    executor: ExecutorSettings = ExecutorSettings()


def demo_settings(config: LoomConfig | dict[str, Any]) -> DemoSettings:
    """The typed ``[demo]`` section of a config.

    Raises:
        ConfigError: an unknown key or a bad value, named as ``demo.<section>.<key>``.
    """
    raw = config.demo if isinstance(config, LoomConfig) else config
    path = str(config.path) if isinstance(config, LoomConfig) and config.path else None
    try:
        return DemoSettings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(["demo", *(str(part) for part in first["loc"])])
        if first["type"] == "extra_forbidden":
            message = f"unknown key {key!r}"
        elif first["type"] == "value_error":
            message = f"{key}: {str(first['msg']).removeprefix('Value error, ')}"
        else:
            message = f"{key} = {first.get('input')!r}: {first['msg']}"
        raise ConfigError(message + " (see docs/demo.md)", path=path) from None
