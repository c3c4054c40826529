"""The risk agent: rolling risk per symbol and the risk budget, on every price tick.

Reads ``market.price.<SYMBOL>`` (:class:`Tick`) and the executor's
``trade.position.<SYMBOL>`` (:class:`Position`), publishes ``analysis.risk.<SYMBOL>``
(:class:`Risk`) for every tick, with ``tick_ts`` = the tick's ``sent_ts``.

Volatility, VaR, ES and drawdown come from :class:`RollingRisk` over ``[demo.risk] window``
log-returns (definitions in ``indicators.py``). ``exposure`` is the signed notional of the
current position, ``size * mark_price`` of its latest event. New exposure is not
``allowed`` (see :func:`check_limits`) once ``|exposure|`` reaches
``max_position_notional``, or once the position's one-tick VaR, ``|exposure| * var_95``,
exceeds ``max_var_fraction`` of the equity (``[demo.executor] cash`` stands for it).
"""

from __future__ import annotations

from dataclasses import dataclass

from loom_kernel import Agent, Context, Envelope, on_event

from .indicators import RollingRisk
from .schemas import Position, Risk, RiskLimits, Tick
from .settings import demo_settings

__all__ = ["RiskAgent", "check_limits"]


def check_limits(
    exposure: float, var_95: float, limits: RiskLimits, equity: float
) -> tuple[bool, str]:
    """Whether new exposure is allowed, and why not.

    >>> limits = RiskLimits(max_position_notional=100.0, max_leverage=5, max_var_fraction=0.1)
    >>> check_limits(150.0, 0.01, limits, equity=1000.0)[0]
    False
    """
    notional = abs(exposure)
    if notional >= limits.max_position_notional:
        return False, (
            f"position notional {notional:,.2f} reached the limit "
            f"{limits.max_position_notional:,.2f} ([demo.risk] max_position_notional)"
        )
    position_var = notional * var_95
    budget = limits.max_var_fraction * equity
    if position_var > budget:
        return False, (
            f"position VaR {position_var:,.2f} (95 %, one tick) exceeds "
            f"{limits.max_var_fraction:.2%} of equity {equity:,.2f} = {budget:,.2f} "
            "([demo.risk] max_var_fraction)"
        )
    return True, ""


@dataclass(frozen=True)
class _Budget:
    window: int
    limits: RiskLimits
    equity: float


class RiskAgent(Agent):
    """Publishes ``analysis.risk.<SYMBOL>`` for every ``market.price.<SYMBOL>`` tick."""

    id = "risk"

    def __init__(self, agent_id: str | None = None):
        super().__init__(agent_id)
        self.windows: dict[str, RollingRisk] = {}
        self.exposure: dict[str, float] = {}  # symbol -> signed notional of the position
        self._budget: _Budget | None = None

    async def on_start(self, ctx: Context) -> None:
        self._settings(ctx)  # a bad [demo] fails the start rather than the first tick

    @on_event("trade.position.*")
    async def on_position(self, event: Envelope, ctx: Context) -> None:
        position = Position.model_validate(event.data)
        self.exposure[position.symbol] = position.size * position.mark_price

    @on_event("market.price.*", qos="realtime")
    async def on_price(self, event: Envelope, ctx: Context) -> None:
        tick = Tick.model_validate(event.data)
        budget = self._settings(ctx)
        window = self.windows.get(tick.symbol)
        if window is None:
            window = self.windows[tick.symbol] = RollingRisk(budget.window)
        reading = window.update(tick.price)
        exposure = self.exposure.get(tick.symbol, 0.0)
        allowed, reason = check_limits(exposure, reading.var_95, budget.limits, budget.equity)
        risk = Risk(
            symbol=tick.symbol,
            price=tick.price,
            volatility=reading.volatility,
            var_95=reading.var_95,
            es_95=reading.es_95,
            drawdown=reading.drawdown,
            exposure=exposure,
            limits=budget.limits,
            allowed=allowed,
            reason=reason,
            tick_ts=tick.sent_ts,
        )
        await ctx.emit(f"analysis.risk.{tick.symbol}", risk.model_dump())

    def _settings(self, ctx: Context) -> _Budget:
        # Read lazily as well as in on_start: a subscription's consumer may run while
        # the next subscription is being set up, before on_start.
        if self._budget is None:
            demo = demo_settings(ctx.config)
            risk = demo.risk
            limits = RiskLimits(
                max_position_notional=risk.max_position_notional,
                max_leverage=risk.max_leverage,
                max_var_fraction=risk.max_var_fraction,
            )
            self._budget = _Budget(risk.window, limits, demo.executor.cash)
        return self._budget
