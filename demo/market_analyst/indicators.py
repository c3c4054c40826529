"""Incremental indicators for the trend and risk agents: constant work per tick, no pandas.

Every indicator takes one price at a time with ``update(price)`` and keeps only what the
next update needs. The EMAs are seeded with the first price (pandas'
``ewm(span=n, adjust=False)``), so values exist from the first tick; ``ready`` says when
enough ticks were seen for them to mean something.

:class:`TrendState` combines them into a signal by weighted votes, each +1 (bullish),
-1 (bearish) or 0:

========================  ======  =================================================
vote                      weight  +1 when (-1 when the opposite holds)
========================  ======  =================================================
EMA crossover             0.35    fast EMA above the slow EMA
MACD histogram            0.25    MACD above its signal line
momentum                  0.25    price above the price ``momentum_window`` ticks ago
RSI                       0.15    50 < RSI < 70 (-1: 30 < RSI < 50); 0 when the RSI is
                                  overbought (>= 70) or oversold (<= 30): a stretched
                                  move does not confirm the trend
========================  ======  =================================================

The score is the weighted sum, in [-1, 1]. The signal is ``bullish`` when the score is
at least :data:`SIGNAL_THRESHOLD`, ``bearish`` at most minus it, ``neutral`` between;
the strength is ``|score|``. Until every indicator is ready (the slow EMA has seen
``ema_slow`` ticks, the RSI ``rsi_period`` changes, the momentum ``momentum_window``
ticks of history) the signal is ``neutral`` with strength 0.

:class:`RollingRisk` keeps the last ``window`` log-returns r = ln(p_t / p_{t-1}):
volatility is their sample standard deviation; the one-tick 95 % VaR is
``max(0, -expm1(q))`` where q is their 5 % quantile (linear interpolation, numpy's
default); the expected shortfall is the mean of ``-expm1(r)`` over the returns at or
below q (so ES >= VaR); the drawdown is ``1 - price / peak`` over the window's
``window + 1`` prices. VaR and ES are fractions of the price, never negative.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import deque
from dataclasses import dataclass
from typing import Literal

from .schemas import TrendIndicators
from .settings import TrendSettings

__all__ = [
    "EMA",
    "MACD",
    "RSI",
    "SIGNAL_THRESHOLD",
    "VOTE_WEIGHTS",
    "Momentum",
    "RiskReading",
    "RollingRisk",
    "TrendReading",
    "TrendState",
    "trend_score",
]

Signal = Literal["bullish", "bearish", "neutral"]

#: Weights of the trend votes (they sum to 1, so the score stays in [-1, 1]).
VOTE_WEIGHTS = {"ema": 0.35, "macd": 0.25, "momentum": 0.25, "rsi": 0.15}
#: |score| from which the signal leaves neutral: a weighted majority must agree.
SIGNAL_THRESHOLD = 0.4
RSI_OVERBOUGHT = 70.0
RSI_OVERSOLD = 30.0
#: Differences below this fraction of the price are rounding, not direction: EMAs that
#: converge on a flat price must not vote on the sign of their last ulp.
_DEAD_BAND = 1e-9


def _check_price(price: float) -> float:
    if not (price > 0 and math.isfinite(price)):
        raise ValueError(f"price must be a finite number > 0, got {price!r}")
    return price


def _check_period(name: str, value: int, least: int = 1) -> None:
    if value < least:
        raise ValueError(f"{name} must be at least {least}, got {value}")


class EMA:
    """Exponential moving average with ``alpha = 2 / (period + 1)``, seeded with the first value.

    >>> ema = EMA(3)
    >>> [ema.update(x) for x in (1.0, 3.0)]
    [1.0, 2.0]
    """

    __slots__ = ("alpha", "count", "period", "value")

    def __init__(self, period: int):
        _check_period("period", period)
        self.period = period
        self.alpha = 2.0 / (period + 1)
        self.value = 0.0
        self.count = 0

    def update(self, x: float) -> float:
        self.count += 1
        if self.count == 1:
            self.value = x
        else:
            self.value += self.alpha * (x - self.value)
        return self.value

    @property
    def ready(self) -> bool:
        """True once ``period`` values were seen."""
        return self.count >= self.period


class RSI:
    """Wilder's relative strength index over ``period`` price changes, 0..100.

    The average gain and loss are the plain means of the changes while fewer than
    ``period`` were seen, then Wilder's smoothing ``avg = (avg * (period - 1) + x) / period``.
    A series without any change reads 50.
    """

    __slots__ = ("_gain", "_last", "_loss", "changes", "period")

    def __init__(self, period: int):
        _check_period("period", period)
        self.period = period
        self.changes = 0
        self._last: float | None = None
        self._gain = 0.0
        self._loss = 0.0

    def update(self, price: float) -> float:
        if self._last is not None:
            change = price - self._last
            self.changes += 1
            # 1/n while warming up is the running mean; 1/period after is Wilder's.
            weight = 1.0 / min(self.changes, self.period)
            self._gain += weight * (max(change, 0.0) - self._gain)
            self._loss += weight * (max(-change, 0.0) - self._loss)
        self._last = price
        return self.value

    @property
    def value(self) -> float:
        # 100 * gain / (gain + loss) is 100 - 100 / (1 + RS) without dividing by a zero loss.
        total = self._gain + self._loss
        return 50.0 if total <= 0.0 else 100.0 * self._gain / total

    @property
    def ready(self) -> bool:
        return self.changes >= self.period


class MACD:
    """MACD line (fast EMA - slow EMA), its signal EMA and the histogram (line - signal).

    All three are fed from the first tick; ``ready`` follows the slow EMA.
    """

    __slots__ = ("fast", "hist", "line", "signal", "slow")

    def __init__(self, fast: int, slow: int, signal: int):
        if fast >= slow:
            raise ValueError(
                f"the fast EMA ({fast} ticks) must be shorter than the slow one ({slow} ticks)"
            )
        self.fast, self.slow, self.signal = EMA(fast), EMA(slow), EMA(signal)
        self.line = self.hist = 0.0

    def update(self, price: float) -> float:
        """Feed a price; returns the histogram."""
        self.line = self.fast.update(price) - self.slow.update(price)
        self.hist = self.line - self.signal.update(self.line)
        return self.hist

    @property
    def ready(self) -> bool:
        return self.slow.ready


class Momentum:
    """Relative change over ``window`` ticks: ``price / price[window ticks ago] - 1``.

    While fewer ticks were seen, the change since the first one.
    """

    __slots__ = ("_prices", "value", "window")

    def __init__(self, window: int):
        _check_period("window", window)
        self.window = window
        self._prices: deque[float] = deque(maxlen=window + 1)
        self.value = 0.0

    def update(self, price: float) -> float:
        self._prices.append(price)
        self.value = price / self._prices[0] - 1.0
        return self.value

    @property
    def ready(self) -> bool:
        return len(self._prices) > self.window


@dataclass(frozen=True)
class TrendReading:
    """What :meth:`TrendState.update` concludes from one tick."""

    signal: Signal
    strength: float  # |score|, 0..1; 0 while not ready
    ready: bool
    indicators: TrendIndicators


class TrendState:
    """The trend indicators of one symbol, combined into a signal (see the module doc).

    Raises:
        ValueError: ``ema_fast`` is not shorter than ``ema_slow``.
    """

    def __init__(self, settings: TrendSettings):
        self.macd = MACD(settings.ema_fast, settings.ema_slow, settings.macd_signal)
        self.rsi = RSI(settings.rsi_period)
        self.momentum = Momentum(settings.momentum_window)

    @property
    def ready(self) -> bool:
        return self.macd.ready and self.rsi.ready and self.momentum.ready

    def update(self, price: float) -> TrendReading:
        """Feed a price. Raises ``ValueError`` unless it is finite and > 0."""
        _check_price(price)
        macd, rsi, momentum = self.macd, self.rsi, self.momentum
        macd.update(price)
        rsi.update(price)
        momentum.update(price)
        indicators = TrendIndicators(
            ema_fast=macd.fast.value,
            ema_slow=macd.slow.value,
            rsi=rsi.value,
            macd=macd.line,
            macd_signal=macd.signal.value,
            macd_hist=macd.hist,
            momentum=momentum.value,
        )
        if not self.ready:
            return TrendReading("neutral", 0.0, False, indicators)
        score = trend_score(indicators, price)
        if score >= SIGNAL_THRESHOLD:
            signal: Signal = "bullish"
        elif score <= -SIGNAL_THRESHOLD:
            signal = "bearish"
        else:
            signal = "neutral"
        return TrendReading(signal, min(abs(score), 1.0), True, indicators)


def trend_score(indicators: TrendIndicators, price: float) -> float:
    """The weighted vote of the indicators, in [-1, 1] (> 0 bullish)."""
    band = _DEAD_BAND * price
    rsi = indicators.rsi
    # Overbought or oversold: the move is stretched and confirms nothing.
    rsi_vote = _sign(rsi - 50.0, 0.0) if RSI_OVERSOLD < rsi < RSI_OVERBOUGHT else 0
    votes = {
        "ema": _sign(indicators.ema_fast - indicators.ema_slow, band),
        "macd": _sign(indicators.macd_hist, band),
        "momentum": _sign(indicators.momentum, _DEAD_BAND),
        "rsi": rsi_vote,
    }
    return sum(VOTE_WEIGHTS[name] * vote for name, vote in votes.items())


def _sign(x: float, band: float) -> int:
    return 1 if x > band else -1 if x < -band else 0


@dataclass(frozen=True)
class RiskReading:
    """Rolling risk of one symbol after a tick (see the module doc for the definitions)."""

    volatility: float
    var_95: float
    es_95: float
    drawdown: float
    returns: int  # log-returns in the window


class RollingRisk:
    """Volatility, 95 % VaR and ES of the last ``window`` log-returns, drawdown from the peak.

    The mean and variance slide in O(1) (Welford's update, recomputed exactly once per
    ``window`` ticks so rounding cannot accumulate, and whenever the variance falls a
    millionfold in one tick, where one subtraction's rounding would show); the peak is a
    monotonic deque; the quantile reads a sorted copy of the window (a binary search and a
    ``window``-sized memmove per tick: constant for a fixed window).
    """

    def __init__(self, window: int, level: float = 0.95):
        _check_period("window", window, least=2)
        if not 0.5 <= level < 1:
            raise ValueError(f"level must be in [0.5, 1), got {level!r}")
        self.window = window
        self.tail = 1.0 - level
        self._returns: deque[float] = deque()
        self._sorted: list[float] = []
        self._mean = 0.0
        self._m2 = 0.0
        self._since_resync = 0
        self._peaks: deque[tuple[int, float]] = deque()  # (tick index, price), prices falling
        self._ticks = 0
        self._last: float | None = None

    def update(self, price: float) -> RiskReading:
        """Feed a price. Raises ``ValueError`` unless it is finite and > 0."""
        _check_price(price)
        if self._last is not None:
            self._add_return(math.log(price / self._last))
        self._last = price
        self._track_peak(price)
        var_95, es_95 = self._tail_risk()
        return RiskReading(
            volatility=self.volatility,
            var_95=var_95,
            es_95=es_95,
            drawdown=max(0.0, 1.0 - price / self._peaks[0][1]),
            returns=len(self._returns),
        )

    @property
    def volatility(self) -> float:
        n = len(self._returns)
        return math.sqrt(max(self._m2, 0.0) / (n - 1)) if n > 1 else 0.0

    def _add_return(self, r: float) -> None:
        returns = self._returns
        returns.append(r)
        insort(self._sorted, r)
        if len(returns) <= self.window:
            delta = r - self._mean
            self._mean += delta / len(returns)
            self._m2 += delta * (r - self._mean)
            return
        old = returns.popleft()
        del self._sorted[bisect_left(self._sorted, old)]
        mean = self._mean + (r - old) / self.window
        before = self._m2
        self._m2 += (r - old) * (r - mean + old - self._mean)
        self._mean = mean
        self._since_resync += 1
        # A large return leaving the window cancels most of m2: the rounding error of that
        # subtraction (~1e-16 of the m2 before) is then no longer small beside what is
        # left (a window of equal returns gave a volatility of 9e-9, not 0): recompute.
        if self._since_resync >= self.window or self._m2 < before * 1e-6:
            self._resync()

    def _resync(self) -> None:
        self._since_resync = 0
        self._mean = math.fsum(self._returns) / len(self._returns)
        self._m2 = math.fsum((r - self._mean) ** 2 for r in self._returns)

    def _track_peak(self, price: float) -> None:
        peaks, tick = self._peaks, self._ticks
        self._ticks += 1
        while peaks and peaks[-1][1] <= price:
            peaks.pop()
        peaks.append((tick, price))
        if peaks[0][0] < tick - self.window:  # the window holds window + 1 prices
            peaks.popleft()

    def _tail_risk(self) -> tuple[float, float]:
        ordered = self._sorted
        if not ordered:
            return 0.0, 0.0
        position = (len(ordered) - 1) * self.tail
        low = math.floor(position)
        fraction = position - low
        quantile = ordered[low]
        if fraction > 0.0:
            quantile += (ordered[low + 1] - quantile) * fraction
        tail = ordered[: bisect_right(ordered, quantile)]
        var_95 = max(0.0, -math.expm1(quantile))
        es_95 = max(0.0, -math.fsum(math.expm1(r) for r in tail) / len(tail))
        return var_95, es_95
