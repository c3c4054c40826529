"""The planner: per-symbol fan-in of trend, risk and sentiment, then a plan.

For each symbol, a ``Trend`` triggers planning (at most every ``plan_every_sec``).
The planner gathers the ``Risk`` and ``Sentiment`` of the same tick (a fan-in with a
timeout: the analyses of one tick arrive from three agents in any order), asks the LLM
``[llm.<planner.llm>]`` for a structured :class:`PlanDecision`, checks it against the
risk limits, refuses to flip-flop without new evidence (its memory of past decisions),
and publishes ``plan.<SYMBOL>``.

With no LLM configured or reachable, an explicit rule planner decides, and the plan
says ``source = "rules"`` with the reason: a rule plan never passes for an LLM's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from loom_kernel import Agent, Context, LLMError, MemoryQueryError, on_event
from loom_kernel.protocol import new_id, parse_traceparent

from .schemas import Plan, PlanDecision, Position, Risk, Sentiment, Trend
from .settings import DemoSettings, demo_settings

__all__ = ["PlannerAgent", "rule_decision"]

SYSTEM = (
    "You are the planner of a paper-trading desk. From the evidence (trend indicators, "
    "risk metrics and limits, news sentiment, current position), decide one action for "
    "the symbol: BUY, SELL or HOLD, with a confidence in [0, 1], a size in units, a "
    "leverage >= 1, an optional limit price (null for a market order), a stop loss and a "
    "take profit, and one or two sentences of reasoning. Respect the risk limits; prefer "
    "HOLD when the evidence disagrees."
)
#: How much the evidence must move before the planner reverses a recent decision.
NEW_EVIDENCE = {"trend_score": 0.25, "sentiment": 0.3}  # trend_score: signed strength
PENDING_PLANS = 10_000  # decisions kept waiting for their order at most (oldest forgotten)


@dataclass
class _Board:
    """The latest analyses of one symbol, and a condition to wait for a given tick."""

    risk: dict[float, tuple[Risk, Any]] = field(default_factory=dict)
    sentiment: dict[float, tuple[Sentiment, Any]] = field(default_factory=dict)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def put(self, table: dict[float, Any], tick_ts: float, value: Any) -> None:
        """Keep an analysis of a tick and wake the fan-ins waiting for it."""
        async with self.changed:
            table[tick_ts] = value
            while len(table) > 64:  # bounded: only recent ticks matter
                del table[next(iter(table))]
            self.changed.notify_all()


class PlannerAgent(Agent):
    """Turns analyses into plans (``plan.<SYMBOL>``)."""

    id = "planner"

    async def on_start(self, ctx: Context) -> None:
        self.settings: DemoSettings = demo_settings(ctx.config)
        self.boards: dict[str, _Board] = {}
        self.positions: dict[str, Position] = {}
        self.last_planned: dict[str, float] = {}
        self.busy: set[str] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        # plan id -> memory id of its decision, until its order is final (bounded: a plan
        # whose order never comes must not stay for ever)
        self.decisions: OrderedDict[str, str] = OrderedDict()
        self.plans = 0
        self.last_fallback: str | None = None
        name = self.settings.planner.llm
        self.llm = ctx.llm(name) if name and name in ctx.config.llm else None
        self.no_llm_reason = (
            None
            if self.llm is not None
            else f"no [llm.{name}] in loom.toml"
            if name
            else "[demo.planner] llm is unset"
        )

    def _board(self, symbol: str) -> _Board:
        return self.boards.setdefault(symbol, _Board())

    # -- evidence ----------------------------------------------------------------------

    @on_event("analysis.risk.*", qos="realtime")
    async def on_risk(self, event, ctx: Context) -> None:
        risk = Risk.model_validate(event.data)
        board = self._board(risk.symbol)
        await board.put(board.risk, risk.tick_ts, (risk, event))

    @on_event("analysis.sentiment.*", qos="realtime")
    async def on_sentiment(self, event, ctx: Context) -> None:
        sentiment = Sentiment.model_validate(event.data)
        board = self._board(sentiment.symbol)
        await board.put(board.sentiment, sentiment.tick_ts, (sentiment, event))

    @on_event("trade.position.*", qos="realtime")
    async def on_position(self, event, ctx: Context) -> None:
        position = Position.model_validate(event.data)
        self.positions[position.symbol] = position

    @on_event("trade.order.*")
    async def on_order(self, event, ctx: Context) -> None:
        order = event.data
        if order.get("status") in ("filled", "cancelled", "rejected") and order.get("plan_id"):
            decision = self.decisions.pop(order["plan_id"], None)
            if decision is not None and order["status"] == "filled":
                try:
                    await ctx.memory.mark_executed(decision, {"order_id": order["id"]})
                except MemoryQueryError:  # a resting order outlived decision_ttl_sec
                    ctx.log.info("plan %s filled after its decision left memory", order["plan_id"])

    async def on_stop(self, ctx: Context) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)

    # -- planning ----------------------------------------------------------------------

    @on_event("analysis.trend.*", qos="realtime")
    async def on_trend(self, event, ctx: Context) -> None:
        trend = Trend.model_validate(event.data)
        symbol, settings = trend.symbol, self.settings.planner
        now = time.monotonic()
        if not trend.ready or symbol in self.busy:
            return
        if now - self.last_planned.get(symbol, -1e9) < settings.plan_every_sec:
            return
        self.last_planned[symbol] = now
        self.busy.add(symbol)
        # Each symbol plans in its own task (it inherits this handler's span and event),
        # so a slow LLM answer for one symbol does not hold the others' trends back.
        task = asyncio.get_running_loop().create_task(self._plan_symbol(ctx, trend))
        self.tasks.add(task)
        task.add_done_callback(self._planned)

    def _planned(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled():
            task.exception()  # logged in _plan_symbol; retrieved so asyncio does not warn

    async def _plan_symbol(self, ctx: Context, trend: Trend) -> None:
        try:
            risk, sentiment = await self._gather(ctx, trend)
            plan = await self._plan(ctx, trend, risk, sentiment)
            self.plans += 1
            await ctx.emit(f"plan.{trend.symbol}", plan.model_dump())
        except Exception as exc:
            ctx.log.error("planning %s failed: %s: %s", trend.symbol, type(exc).__name__, exc)
            raise
        finally:
            self.busy.discard(trend.symbol)

    async def _gather(self, ctx: Context, trend: Trend) -> tuple[Risk | None, Sentiment | None]:
        """Fan-in: the risk and sentiment of the trend's tick, or what arrived in time."""
        board = self._board(trend.symbol)
        timeout = self.settings.planner.fan_in_timeout
        with ctx.span(
            "fan_in", attributes={"loom.pattern": "fan_in", "demo.symbol": trend.symbol}
        ) as span:
            async with board.changed:
                with contextlib.suppress(TimeoutError):  # then: what arrived in time
                    await asyncio.wait_for(
                        board.changed.wait_for(
                            lambda: trend.tick_ts in board.risk and trend.tick_ts in board.sentiment
                        ),
                        timeout,
                    )
                risk = board.risk.get(trend.tick_ts) or _latest(board.risk)
                sentiment = board.sentiment.get(trend.tick_ts) or _latest(board.sentiment)
            if span is not None:
                gathered = [item for item in (risk, sentiment) if item is not None]
                span.set_attribute("loom.gathered", len(gathered) + 1)
                span.set_attribute("loom.complete", len(gathered) == 2)
                for _, source in gathered:
                    link = parse_traceparent(source.traceparent)
                    if link is not None:
                        span.add_link(link[0], link[1])
        return (risk[0] if risk else None), (sentiment[0] if sentiment else None)

    async def _plan(
        self, ctx: Context, trend: Trend, risk: Risk | None, sentiment: Sentiment | None
    ) -> Plan:
        settings = self.settings
        position = self.positions.get(trend.symbol)
        evidence = _evidence(trend, risk, sentiment, position)
        decision, source, model, reason, llm_ms = None, "rules", None, self.no_llm_reason, 0.0
        if self.llm is not None:
            started = time.perf_counter()
            try:
                decision = await self.llm.structured(
                    json.dumps(evidence), PlanDecision, system=SYSTEM
                )
                source, model, reason = "llm", self.llm.model, None
            except LLMError as exc:
                reason = f"LLM unavailable: {exc}"
                if reason != self.last_fallback:  # once per cause, not once per plan
                    ctx.log.warning("planning by rules: %s", exc)
                    self.last_fallback = reason
            llm_ms = (time.perf_counter() - started) * 1000
        if decision is None:
            decision = rule_decision(trend, risk, sentiment, settings, position)
        decision, checks = _check_limits(decision, trend, risk, position, settings)
        decision, more = await self._no_flip_flop(ctx, trend.symbol, decision, evidence)
        checks += more
        plan = Plan(
            **decision.model_dump(),
            id=f"plan-{new_id()}",
            symbol=trend.symbol,
            source=source,
            model=model,
            fallback_reason=reason,
            checks=checks,
            evidence={
                k: str(v) if isinstance(v, bool) else v
                for k, v in evidence.items()
                if not isinstance(v, dict | list)
            },
            price=trend.price,
            tick_ts=trend.tick_ts,
            llm_ms=round(llm_ms, 3),
        )
        if plan.action != "HOLD":
            item = await ctx.memory.record_decision(
                trend.symbol,
                {"action": plan.action, "plan_id": plan.id, "source": plan.source},
                evidence=plan.evidence,
                ttl=settings.planner.decision_ttl_sec,  # only recent ones are read back
            )
            self.decisions[plan.id] = item.id
            while len(self.decisions) > PENDING_PLANS:
                self.decisions.popitem(last=False)
        return plan

    async def _no_flip_flop(
        self, ctx: Context, symbol: str, decision: PlanDecision, evidence: dict[str, Any]
    ) -> tuple[PlanDecision, list[str]]:
        """Refuse to repeat or reverse a recent decision unless the evidence moved."""
        if decision.action == "HOLD":
            return decision, []
        window = self.settings.planner.duplicate_window_sec
        if window <= 0:  # 0 turns the memory check off
            return decision, []
        if await ctx.memory.is_duplicate(symbol, {"action": decision.action}, window=window):
            return _hold(decision, f"same {decision.action} decided within {window:g} s"), [
                "duplicate"
            ]
        last = await ctx.memory.last_decision(symbol)
        if last is None or time.time() - last.created > window:
            return decision, []
        before = (last.meta or {}).get("evidence") or {}
        moved = any(
            abs(float(evidence.get(key) or 0) - float(before.get(key) or 0)) >= threshold
            for key, threshold in NEW_EVIDENCE.items()
        )
        if moved:
            return decision, []
        ago = time.time() - last.created
        note = f"no new evidence since {last.content.get('action')} {ago:.0f} s ago"
        return _hold(decision, note), ["flip-flop refused"]


def rule_decision(
    trend: Trend,
    risk: Risk | None,
    sentiment: Sentiment | None,
    settings: DemoSettings,
    position: Position | None = None,
) -> PlanDecision:
    """The explicit rule planner: a weighted vote of trend and sentiment.

    A signal against the position held closes it (a new position in the other
    direction waits for the next plan); with the risk budget spent, only such
    reductions go through.
    """
    direction = {"bullish": 1.0, "bearish": -1.0, "neutral": 0.0}[trend.signal]
    score = 0.7 * direction * trend.strength + 0.3 * (sentiment.score if sentiment else 0.0)
    rsi = trend.indicators.rsi
    if (score > 0 and rsi > 75) or (score < 0 and rsi < 25):
        score *= 0.5  # stretched: halve the conviction
    confidence = round(min(1.0, 0.5 + abs(score) / 2), 3)
    planner = settings.planner
    held = position.size if position else 0.0
    action = "BUY" if score > 0 else "SELL"
    reduces = held != 0 and (held > 0) != (action == "BUY")
    if abs(score) < 0.25 or confidence < planner.min_confidence:
        return PlanDecision(
            action="HOLD", confidence=confidence, size=0,
            reasoning=f"rules: score {score:+.2f} too weak",
        )  # fmt: skip
    if risk and not risk.allowed and not reduces:
        return PlanDecision(
            action="HOLD", confidence=confidence, size=0, reasoning="rules: risk budget spent"
        )
    price = trend.price
    sign = 1 if action == "BUY" else -1
    size = abs(held) if reduces else planner.order_notional / price
    return PlanDecision(
        action=action,
        confidence=confidence,
        size=round(size, 6),
        leverage=1.0,
        limit_price=None,
        stop_loss=round(price * (1 - sign * planner.stop_loss_pct), 6),
        take_profit=round(price * (1 + sign * planner.take_profit_pct), 6),
        reasoning=(
            f"rules: trend {trend.signal} ({trend.strength:.2f}), sentiment "
            f"{sentiment.score if sentiment else 0:+.2f}, RSI {rsi:.0f} → score {score:+.2f}"
            + (" → close the position" if reduces else "")
        ),
    )


def _check_limits(
    decision: PlanDecision,
    trend: Trend,
    risk: Risk | None,
    position: Position | None,
    settings: DemoSettings,
) -> tuple[PlanDecision, list[str]]:
    """Clamp a decision to the risk limits; each change is written down."""
    if decision.action == "HOLD":
        return decision, []
    checks: list[str] = []
    limits = risk.limits if risk else None
    max_leverage = limits.max_leverage if limits else settings.risk.max_leverage
    max_notional = limits.max_position_notional if limits else settings.risk.max_position_notional
    changes: dict[str, Any] = {}
    if decision.leverage > max_leverage:
        changes["leverage"] = max_leverage
        checks.append(f"leverage {decision.leverage:g} -> {max_leverage:g} (max_leverage)")
    held = position.size if position else 0.0
    sign = 1 if decision.action == "BUY" else -1
    increases = held == 0 or (held > 0) == (sign > 0)
    if increases and risk is not None and not risk.allowed:
        return _hold(decision, f"risk: {risk.reason or 'budget spent'}"), ["risk budget spent"]
    room = (
        max_notional - abs(held) * trend.price
        if increases
        else max_notional + abs(held) * trend.price
    )
    if decision.size * trend.price > room:
        size = max(0.0, room / trend.price)
        checks.append(f"size {decision.size:g} -> {size:.6g} (max_position_notional)")
        changes["size"] = round(size, 6)
    price = decision.limit_price or trend.price
    pct = settings.planner
    if decision.stop_loss is None or (decision.stop_loss - price) * sign >= 0:
        changes["stop_loss"] = round(price * (1 - sign * pct.stop_loss_pct), 6)
        checks.append("stop_loss set on the safe side")
    if decision.take_profit is None or (decision.take_profit - price) * sign <= 0:
        changes["take_profit"] = round(price * (1 + sign * pct.take_profit_pct), 6)
        checks.append("take_profit set on the profit side")
    checked = decision.model_copy(update=changes)
    if checked.size <= 0:
        return _hold(checked, "no room left under max_position_notional"), checks
    return checked, checks


def _hold(decision: PlanDecision, why: str) -> PlanDecision:
    return decision.model_copy(
        update={
            "action": "HOLD",
            "size": 0.0,
            "leverage": 1.0,
            "limit_price": None,
            "stop_loss": None,
            "take_profit": None,
            "reasoning": f"{decision.reasoning} [HOLD: {why}]",
        }
    )


def _latest(table: dict[float, Any]) -> Any:
    return table[next(reversed(table))] if table else None


def _evidence(
    trend: Trend, risk: Risk | None, sentiment: Sentiment | None, position: Position | None
) -> dict[str, Any]:
    evidence: dict[str, Any] = {
        "symbol": trend.symbol,
        "price": trend.price,
        "trend": trend.signal,
        "trend_strength": round(trend.strength, 4),
        "trend_score": round(
            {"bullish": 1, "bearish": -1, "neutral": 0}[trend.signal] * trend.strength, 4
        ),
        "rsi": round(trend.indicators.rsi, 2),
        "macd_hist": round(trend.indicators.macd_hist, 6),
        "momentum": round(trend.indicators.momentum, 6),
        "sentiment": round(sentiment.score, 4) if sentiment else None,
        "volatility": round(risk.volatility, 6) if risk else None,
        "var_95": round(risk.var_95, 6) if risk else None,
        "risk_allowed": risk.allowed if risk else None,
        "position": position.size if position else 0.0,
    }
    if risk is not None:
        evidence["limits"] = risk.limits.model_dump()
    if sentiment is not None:
        evidence["headlines"] = [source.title for source in sentiment.sources[:5]]
    return evidence
