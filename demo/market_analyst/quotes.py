"""A price at a time, before it becomes a :class:`~demo.market_analyst.schemas.Tick`: what
every price source of the data agent (replay, simulation, OKX) hands it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SPREAD", "Quote", "quote"]

SPREAD = 1e-4  # ask - bid, relative to the price (1 basis point)


@dataclass(frozen=True, slots=True)
class Quote:
    """A price at a time: a tick before it gets its symbol, source and sequence number."""

    price: float
    bid: float
    ask: float
    volume: float
    ts: float


def quote(price: float, volume: float, ts: float) -> Quote:
    """A quote with ``bid``/``ask`` half a :data:`SPREAD` either side of ``price``."""
    half = price * SPREAD / 2
    return Quote(price, price - half, price + half, volume, ts)
