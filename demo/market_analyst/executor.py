"""The executor: turns plans into paper trades and publishes what the broker did.

Ticks (``market.price.<SYM>``) go to the :class:`~.broker.PaperBroker`, which fills
resting limit orders and closes positions on stop loss, take profit or liquidation;
plans (``plan.<SYM>``) become orders. Every change is published as it happened, on
``trade.order.<SYM>``, ``trade.fill.<SYM>`` and ``trade.position.<SYM>``; between
changes an open position is re-published marked to market at most every
``mark_interval`` seconds per symbol. ``executor.positions`` answers with the account.

``[demo.executor] exchange = "okx-demo"`` is not implemented (it needs ``ccxt`` and OKX
demo-trading keys): the executor logs an error at start and trades on paper.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from loom_kernel import Agent, ConfigError, Context, Envelope, on_event, tool

from .broker import BrokerEvent, PaperBroker, Portfolio
from .schemas import Fill, Order, Plan, Position, Tick
from .settings import demo_settings

__all__ = ["ExecutorAgent"]

_FAMILY = {Order: "trade.order", Fill: "trade.fill", Position: "trade.position"}


class ExecutorAgent(Agent):
    """Paper-trades plans with the ``[demo.executor]`` settings.

    Args:
        agent_id: defaults to ``"executor"``.
        mark_interval: seconds between two mark-to-market updates of a symbol's position.
        clock: the time stamped on orders, fills and positions.
    """

    id = "executor"

    def __init__(
        self,
        agent_id: str | None = None,
        *,
        mark_interval: float = 0.5,
        clock: Callable[[], float] = time.time,
    ):
        super().__init__(agent_id)
        self.mark_interval = mark_interval
        self.clock = clock
        self.broker = PaperBroker(clock=clock)
        self._marked: dict[str, float] = {}  # symbol -> monotonic time of its last update

    async def on_start(self, ctx: Context) -> None:
        config = ctx.config
        settings = demo_settings(config)
        try:
            self.broker = PaperBroker(
                settings.executor, max_leverage=settings.risk.max_leverage, clock=self.clock
            )
        except ValueError as exc:  # the two sections disagree
            path = str(config.path) if config.path else None
            raise ConfigError(
                f"{exc}: lower [demo.executor] maintenance_margin or [demo.risk] max_leverage",
                path=path,
            ) from None
        if settings.executor.exchange == "okx-demo":
            ctx.log.error(
                '[demo.executor] exchange = "okx-demo" needs ccxt and OKX demo-trading API '
                "keys, which this demo does not ship: trading on paper instead "
                '(set exchange = "paper" to silence this)'
            )

    @on_event("market.price.*", qos="realtime")
    async def on_tick(self, event: Envelope, ctx: Context) -> None:
        tick = Tick.model_validate(event.data)
        events = self.broker.on_tick(tick)
        await self._publish(events, ctx)
        position = self.broker.position(tick.symbol)
        if position is not None and position.size and self._mark_due(tick.symbol):
            await self._publish([position], ctx)

    @on_event("plan.*")
    async def on_plan(self, event: Envelope, ctx: Context) -> None:
        plan = Plan.model_validate(event.data)
        if plan.action == "HOLD":
            return
        events = self.broker.place_order(
            plan.symbol,
            plan.action,
            plan.size,
            limit_price=plan.limit_price,
            leverage=plan.leverage,
            stop_loss=plan.stop_loss,
            take_profit=plan.take_profit,
            plan_id=plan.id,
            tick_ts=plan.tick_ts,
        )
        for record in events:
            if isinstance(record, Order) and record.status == "rejected":
                ctx.log.warning("plan %s: order rejected: %s", plan.id, record.reason)
        await self._publish(events, ctx)

    @tool("executor.positions")
    async def positions(self) -> Portfolio:
        """The paper account (cash, margin used, PnL, equity), every position traded,
        marked at its last tick, and the resting limit orders."""
        return self.broker.portfolio()

    async def _publish(self, events: list[BrokerEvent], ctx: Context) -> None:
        for record in events:
            await ctx.emit(f"{_FAMILY[type(record)]}.{record.symbol}", record.model_dump())
            if isinstance(record, Position):
                self._marked[record.symbol] = time.monotonic()

    def _mark_due(self, symbol: str) -> bool:
        last = self._marked.get(symbol)
        return last is None or time.monotonic() - last >= self.mark_interval
