"""A paper broker: orders, fills, margin and positions on the prices it is shown.

Pure and synchronous: no bus and no clock of its own (``clock`` is injected), so a
price path always gives the same fills. :class:`~.executor.ExecutorAgent` feeds it
ticks and plans and publishes the :class:`Order`, :class:`Fill` and :class:`Position`
records its methods return, in the order they happened.

Accounting, isolated margin, one position per symbol (size signed: > 0 long)::

    margin      = entry notional / leverage       locked in the position when it fills
    cash        = what no position locks: the free margin new orders draw on
    unrealized  = (mark - entry) * size           mark = the last tick's price
    equity      = cash + Σ margin + Σ unrealized
                = initial cash + realized - fees + unrealized        (always)

Fills. A market order fills at once at the ask (BUY) or the bid (SELL), paying the
taker fee on the notional. A limit order that the quote already crosses fills the same
way; otherwise it rests until a later tick crosses it (BUY: ask <= limit; SELL: bid >=
limit) and fills at its limit price, paying the maker fee. Margin is checked when an
order is placed and again when a resting one fills (it is cancelled if it no longer
fits). An order against the position first closes it (releasing margin pro rata and
realising ``(exit - entry) * closed size``), the rest opens the other way; adding to a
position averages its entry, and its leverage becomes entry notional / margin.

Exits, checked on each tick before resting orders, for the position as it stood before
that tick: liquidation when the mark crosses the liquidation price ::

    long:  entry * (1 - 1/leverage + maintenance_margin)
    short: entry * (1 + 1/leverage - maintenance_margin)

i.e. where the loss has eaten the margin down to the maintenance margin. The position
is closed at that price, even if the tick gapped past it, and the remaining maintenance
margin is charged as the liquidation fee: the position loses exactly its margin.
Otherwise a stop loss (long: bid <= stop; short: ask >= stop) or a take profit (long:
bid >= target; short: ask <= target) closes it like a market order at the tick's bid or
ask: at the level when the tick touches it, past it when prices gap (worse for a stop,
better for a target). Liquidation wins when a gap crosses both.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from pydantic import BaseModel

from .schemas import Fill, Order, Position, Side, Tick
from .settings import ExecutorSettings

__all__ = ["Account", "BrokerEvent", "PaperBroker", "Portfolio"]

BrokerEvent = Order | Fill | Position
Liquidity = Literal["taker", "maker"]
ClosedReason = Literal["stop_loss", "take_profit", "liquidation", "signal"]

_FLAT = 1e-9  # a size this close to zero is flat (the float residue of partial closes)


class Account(BaseModel):
    """The paper account as a whole, marked at the last ticks."""

    cash: float  # free margin
    margin_used: float
    unrealized_pnl: float
    equity: float
    realized_pnl: float  # before fees
    fees: float
    ts: float


class Portfolio(BaseModel):
    """What ``executor.positions`` answers."""

    account: Account
    positions: list[Position]  # every symbol traded, flat ones included
    open_orders: list[Order]


@dataclass
class _Holding:
    """The book of one symbol: its position and running totals."""

    size: float = 0.0
    entry: float = 0.0
    margin: float = 0.0
    leverage: float = 1.0
    stop_loss: float | None = None
    take_profit: float | None = None
    realized: float = 0.0
    fees: float = 0.0

    @property
    def direction(self) -> int:
        return 0 if abs(self.size) < _FLAT else (1 if self.size > 0 else -1)


@dataclass(frozen=True)
class _Trade:
    """What a fill would do to a holding, computed before anything changes."""

    closing: float  # units of the position closed
    opening: float  # units opened in the order's direction
    released: float  # margin freed by the closing part
    pnl: float  # realised by the closing part
    margin: float  # margin locked by the opening part
    fee: float

    @property
    def cash_delta(self) -> float:
        return self.released + self.pnl - self.fee - self.margin


class _Refused(Exception):
    """An order that cannot fill; the message is the order's ``reason``."""


class PaperBroker:
    """Paper trading with leverage, isolated margin, stops and liquidations.

    Args:
        settings: cash, fees and maintenance margin (``[demo.executor]``).
        max_leverage: orders asking for more are rejected.
        clock: the time stamped on every record (epoch seconds).

    Raises:
        ValueError: a maintenance margin of ``1 / max_leverage`` or more, which would
            liquidate positions at the maximum leverage as soon as they open.

    >>> broker = PaperBroker(clock=lambda: 0.0)
    >>> tick = Tick(symbol="AAPL", price=100, bid=99.9, ask=100.1, volume=1, ts=0,
    ...             sent_ts=0, source="sim", seq=0)
    >>> _ = broker.on_tick(tick)
    >>> [type(e).__name__ for e in broker.place_order("AAPL", "BUY", 10)]
    ['Order', 'Fill', 'Position']
    """

    def __init__(
        self,
        settings: ExecutorSettings | None = None,
        *,
        max_leverage: float = 5.0,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings if settings is not None else ExecutorSettings()
        if not max_leverage >= 1:
            raise ValueError(f"max_leverage {max_leverage:g} must be at least 1")
        if self.settings.maintenance_margin >= 1 / max_leverage:
            raise ValueError(
                f"maintenance_margin {self.settings.maintenance_margin:g} must be below "
                f"1 / max_leverage = {1 / max_leverage:g}, or positions at the maximum "
                "leverage are liquidated as they open"
            )
        self.max_leverage = max_leverage
        self.clock = clock
        self.initial_cash = self.cash = self.settings.cash
        self._quotes: dict[str, Tick] = {}
        self._holdings: dict[str, _Holding] = {}
        self._resting: dict[str, Order] = {}
        self._placed = 0

    # -- orders ----------------------------------------------------------------------

    def place_order(
        self,
        symbol: str,
        side: Side,
        size: float,
        *,
        limit_price: float | None = None,
        leverage: float = 1.0,
        stop_loss: float | None = None,
        take_profit: float | None = None,
        plan_id: str | None = None,
        tick_ts: float | None = None,
    ) -> list[BrokerEvent]:
        """Place a market order (``limit_price=None``) or a limit order.

        Returns what happened: ``[Order rejected]``, ``[Order new]`` for a limit order
        that rests, or ``[Order filled, Fill, Position...]`` (two positions when the
        order flips one: the closed one, then the new one). ``stop_loss`` and
        ``take_profit`` are set on the position the order opens or adds to.
        """
        if side not in ("BUY", "SELL"):
            raise ValueError(f"side {side!r}: use 'BUY' or 'SELL'")
        order = dict(
            id=self._next_id(),
            plan_id=plan_id,
            symbol=symbol,
            side=side,
            type="market" if limit_price is None else "limit",
            size=size,
            limit_price=limit_price,
            leverage=leverage,
            stop_loss=stop_loss,
            take_profit=take_profit,
            tick_ts=tick_ts,
        )
        refusal = self._refusal(symbol, side, size, limit_price, leverage)
        if refusal is not None:
            return [self._order(order, "rejected", refusal)]
        quote = self._quotes[symbol]
        if limit_price is None or _crosses(side, limit_price, quote):
            price, liquidity = _executable(side, quote), "taker"
        else:
            price, liquidity = limit_price, "maker"
        refusal = _exit_levels_refusal(side, price, stop_loss, take_profit)
        if refusal is not None:
            return [self._order(order, "rejected", refusal)]
        new = self._order(order, "new")
        try:
            if liquidity == "taker":
                return self._execute(new, price, liquidity)
            self._check_margin(new, self._trade(new, price, liquidity), price)
        except _Refused as refused:
            return [_updated(new, "rejected", str(refused), self.clock())]
        self._resting[new.id] = new
        return [new]

    def cancel_order(self, order_id: str) -> list[BrokerEvent]:
        """Cancel a resting limit order: ``[Order cancelled]``.

        Raises:
            LookupError: no such resting order (filled, cancelled or never placed).
        """
        order = self._resting.pop(order_id, None)
        if order is None:
            raise LookupError(
                f"no resting order {order_id!r}: it was filled or cancelled, or never "
                "placed (open_orders() lists the resting ones)"
            )
        return [_updated(order, "cancelled", "cancelled on request", self.clock())]

    # -- prices ----------------------------------------------------------------------

    def on_tick(self, tick: Tick) -> list[BrokerEvent]:
        """Take a new price: liquidate, stop or take profit the symbol's position, then
        fill the resting limit orders the tick crosses. Returns what happened."""
        self._quotes[tick.symbol] = tick
        return [*self._exits(tick), *self._match_resting(tick)]

    def _exits(self, tick: Tick) -> list[BrokerEvent]:
        holding = self._holdings.get(tick.symbol)
        if holding is None or not holding.direction:
            return []
        long = holding.direction > 0
        liquidation = self._liquidation_price(holding)
        if tick.price <= liquidation if long else tick.price >= liquidation:
            return self._close(tick.symbol, liquidation, "liquidation")
        price = tick.bid if long else tick.ask
        stop, target = holding.stop_loss, holding.take_profit
        if stop is not None and (price <= stop if long else price >= stop):
            return self._close(tick.symbol, price, "stop_loss")
        if target is not None and (price >= target if long else price <= target):
            return self._close(tick.symbol, price, "take_profit")
        return []

    def _match_resting(self, tick: Tick) -> list[BrokerEvent]:
        events: list[BrokerEvent] = []
        for order in list(self._resting.values()):
            limit = order.limit_price or 0.0  # resting orders are limit orders
            if order.symbol != tick.symbol or not _crosses(order.side, limit, tick):
                continue
            del self._resting[order.id]
            try:
                events += self._execute(order, limit, "maker")
            except _Refused as refused:
                events.append(_updated(order, "cancelled", str(refused), self.clock()))
        return events

    def _close(self, symbol: str, price: float, reason: ClosedReason) -> list[BrokerEvent]:
        holding = self._holdings[symbol]
        order = self._order(
            dict(
                id=self._next_id(),
                plan_id=None,
                symbol=symbol,
                side="SELL" if holding.direction > 0 else "BUY",
                type="market",
                size=abs(holding.size),
                leverage=holding.leverage,
            ),
            "new",
            reason,
        )
        return self._execute(order, price, "taker", reason)

    # -- fills -----------------------------------------------------------------------

    def _trade(self, order: Order, price: float, liquidity: Liquidity) -> _Trade:
        holding = self._holdings.get(order.symbol, _Holding())
        direction = 1 if order.side == "BUY" else -1
        closing = min(order.size, abs(holding.size)) if holding.direction == -direction else 0.0
        opening = order.size - closing
        if opening < _FLAT:
            opening = 0.0
        rate = self.settings.taker_fee if liquidity == "taker" else self.settings.maker_fee
        return _Trade(
            closing=closing,
            opening=opening,
            released=holding.margin * closing / abs(holding.size) if closing else 0.0,
            pnl=(price - holding.entry) * closing * holding.direction if closing else 0.0,
            margin=price * opening / order.leverage,
            fee=price * order.size * rate,
        )

    def _check_margin(self, order: Order, trade: _Trade, price: float) -> None:
        available = self.cash + trade.released + trade.pnl
        needed = trade.margin + trade.fee
        if trade.opening and needed > available + 1e-9:
            raise _Refused(
                f"insufficient free margin: {order.side} {order.size:g} {order.symbol} at "
                f"{price:g} with {order.leverage:g}x needs {needed:,.2f} (margin "
                f"{trade.margin:,.2f} + fee {trade.fee:,.2f}), {available:,.2f} is free"
            )

    def _execute(
        self,
        order: Order,
        price: float,
        liquidity: Liquidity,
        reason: ClosedReason = "signal",
    ) -> list[BrokerEvent]:
        """Fill ``order`` entirely at ``price``; raises :class:`_Refused` if the margin
        does not fit. A liquidation's fee is what is left of the margin."""
        trade = self._trade(order, price, liquidity)
        if reason == "liquidation":
            trade = replace(trade, fee=max(0.0, trade.released + trade.pnl))
        self._check_margin(order, trade, price)
        now = self.clock()
        fill = Fill(
            order_id=order.id,
            symbol=order.symbol,
            side=order.side,
            size=order.size,
            price=price,
            fee=trade.fee,
            liquidity=liquidity,
            ts=now,
        )
        positions = self._apply(order, trade, price, reason)
        return [_updated(order, "filled", order.reason, now), fill, *positions]

    def _apply(
        self, order: Order, trade: _Trade, price: float, reason: ClosedReason
    ) -> list[Position]:
        holding = self._holdings.setdefault(order.symbol, _Holding())
        self.cash += trade.cash_delta
        holding.realized += trade.pnl
        holding.fees += trade.fee
        changed: list[Position] = []
        if trade.closing:
            holding.margin -= trade.released
            holding.size -= holding.direction * trade.closing
            if not holding.direction:
                holding.size = holding.margin = 0.0
                holding.stop_loss = holding.take_profit = None
                changed.append(self._position(order.symbol, closed_reason=reason))
        if trade.opening:
            size = abs(holding.size)
            holding.size += trade.opening if order.side == "BUY" else -trade.opening
            holding.margin += trade.margin
            if size:  # adding: the entry averages, the leverage is what the margin makes it
                holding.entry = (holding.entry * size + price * trade.opening) / abs(holding.size)
                holding.leverage = holding.entry * abs(holding.size) / holding.margin
            else:
                holding.entry, holding.leverage = price, order.leverage
            if order.stop_loss is not None:
                holding.stop_loss = order.stop_loss
            if order.take_profit is not None:
                holding.take_profit = order.take_profit
        if trade.opening or not changed:
            changed.append(self._position(order.symbol))
        return changed

    # -- state -----------------------------------------------------------------------

    def quote(self, symbol: str) -> Tick | None:
        """The symbol's last tick; None before its first."""
        return self._quotes.get(symbol)

    def position(self, symbol: str) -> Position | None:
        """The symbol's position marked at its last tick; None if never traded."""
        return self._position(symbol) if symbol in self._holdings else None

    def positions(self) -> list[Position]:
        """Every symbol traded, flat ones included (their realised PnL and fees)."""
        return [self._position(symbol) for symbol in self._holdings]

    def open_orders(self) -> list[Order]:
        """The resting limit orders, oldest first."""
        return list(self._resting.values())

    def account(self) -> Account:
        """Cash, margin, PnL and equity over every position."""
        margin = sum(h.margin for h in self._holdings.values())
        unrealized = sum(self._unrealized(s, h) for s, h in self._holdings.items())
        return Account(
            cash=self.cash,
            margin_used=margin,
            unrealized_pnl=unrealized,
            equity=self.cash + margin + unrealized,
            realized_pnl=sum(h.realized for h in self._holdings.values()),
            fees=sum(h.fees for h in self._holdings.values()),
            ts=self.clock(),
        )

    def portfolio(self) -> Portfolio:
        """The account, the positions and the resting orders."""
        return Portfolio(
            account=self.account(), positions=self.positions(), open_orders=self.open_orders()
        )

    def _position(self, symbol: str, closed_reason: ClosedReason | None = None) -> Position:
        holding = self._holdings[symbol]
        is_open = bool(holding.direction)
        return Position(
            symbol=symbol,
            size=holding.size,
            entry_price=holding.entry if is_open else None,
            mark_price=self._quotes[symbol].price,
            leverage=holding.leverage,
            margin=holding.margin,
            liquidation_price=self._liquidation_price(holding) if is_open else None,
            stop_loss=holding.stop_loss,
            take_profit=holding.take_profit,
            unrealized_pnl=self._unrealized(symbol, holding),
            realized_pnl=holding.realized,
            fees=holding.fees,
            closed_reason=closed_reason,
            ts=self.clock(),
        )

    def _unrealized(self, symbol: str, holding: _Holding) -> float:
        if not holding.direction:
            return 0.0
        return (self._quotes[symbol].price - holding.entry) * holding.size

    def _liquidation_price(self, holding: _Holding) -> float:
        """Where the loss leaves only the maintenance margin (see the module's doc)."""
        buffer = 1 / holding.leverage - self.settings.maintenance_margin
        return holding.entry * (1 - holding.direction * buffer)

    # -- orders' records -------------------------------------------------------------

    def _next_id(self) -> str:
        self._placed += 1
        return f"paper-{self._placed}"

    def _order(self, fields: dict[str, object], status: str, reason: str = "") -> Order:
        record = {**fields, "status": status, "reason": reason, "ts": self.clock()}
        size = record["size"]
        if status == "rejected" and not (isinstance(size, int | float) and size > 0):
            # Order.size is > 0 in the schema; a refused size is still reported as asked.
            return Order.model_construct(**record)
        return Order.model_validate(record)

    def _refusal(
        self,
        symbol: str,
        side: Side,
        size: float,
        limit_price: float | None,
        leverage: float,
    ) -> str | None:
        if not (size > 0 and math.isfinite(size)):
            return f"size {size:g} must be a positive number of units"
        if symbol not in self._quotes:
            return (
                f"no price for {symbol} yet: orders wait for its first tick "
                f"on market.price.{symbol}"
            )
        if not 1 <= leverage <= self.max_leverage:
            return f"leverage {leverage:g}x is outside 1x..{self.max_leverage:g}x (max_leverage)"
        if limit_price is not None and not (limit_price > 0 and math.isfinite(limit_price)):
            return f"limit_price {limit_price:g} must be a positive price"
        return None


def _executable(side: Side, quote: Tick) -> float:
    return quote.ask if side == "BUY" else quote.bid


def _crosses(side: Side, limit: float, quote: Tick) -> bool:
    return quote.ask <= limit if side == "BUY" else quote.bid >= limit


def _exit_levels_refusal(
    side: Side, price: float, stop_loss: float | None, take_profit: float | None
) -> str | None:
    """A stop loss or take profit on the wrong side of the entry would fire at once."""
    below, above = ("stop_loss", "take_profit") if side == "BUY" else ("take_profit", "stop_loss")
    levels = {"stop_loss": stop_loss, "take_profit": take_profit}
    if (level := levels[below]) is not None and not 0 < level < price:
        return f"{below} {level:g} must be below the {side} price {price:g}"
    if (level := levels[above]) is not None and not level > price:
        return f"{above} {level:g} must be above the {side} price {price:g}"
    return None


def _updated(order: Order, status: str, reason: str, ts: float) -> Order:
    return order.model_copy(update={"status": status, "reason": reason, "ts": ts})
