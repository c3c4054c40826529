"""The trend agent: indicators per symbol, a signal on every price tick.

Reads ``market.price.<SYMBOL>`` (:class:`Tick`), keeps a :class:`TrendState` per symbol
(EMA crossover, MACD, RSI, momentum; see ``indicators.py`` for the rule) and publishes
``analysis.trend.<SYMBOL>`` (:class:`Trend`) for every tick. ``tick_ts`` is the tick's
``sent_ts``, so tick → plan → order latency is measured from the tick's publication.
Settings: ``[demo.trend]`` (:class:`TrendSettings`).
"""

from __future__ import annotations

from loom_kernel import Agent, Context, Envelope, on_event

from .indicators import TrendState
from .schemas import Tick, Trend
from .settings import TrendSettings, demo_settings

__all__ = ["TrendAgent"]


class TrendAgent(Agent):
    """Publishes ``analysis.trend.<SYMBOL>`` for every ``market.price.<SYMBOL>`` tick."""

    id = "trend"

    def __init__(self, agent_id: str | None = None):
        super().__init__(agent_id)
        self.states: dict[str, TrendState] = {}
        self._settings: TrendSettings | None = None

    async def on_start(self, ctx: Context) -> None:
        # A bad [demo.trend] fails the start rather than the first tick.
        TrendState(self._trend_settings(ctx))

    @on_event("market.price.*", qos="realtime")
    async def on_price(self, event: Envelope, ctx: Context) -> None:
        tick = Tick.model_validate(event.data)
        state = self.states.get(tick.symbol)
        if state is None:
            state = self.states[tick.symbol] = TrendState(self._trend_settings(ctx))
        reading = state.update(tick.price)
        trend = Trend(
            symbol=tick.symbol,
            signal=reading.signal,
            strength=reading.strength,
            price=tick.price,
            indicators=reading.indicators,
            ready=reading.ready,
            tick_ts=tick.sent_ts,
        )
        await ctx.emit(f"analysis.trend.{tick.symbol}", trend.model_dump())

    def _trend_settings(self, ctx: Context) -> TrendSettings:
        # Read lazily as well as in on_start: the consumer of a subscription may run
        # before on_start has finished.
        if self._settings is None:
            self._settings = demo_settings(ctx.config).trend
        return self._settings
