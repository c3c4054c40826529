"""The OKX live client: the data agent's ``source = "okx"`` mode.

:func:`stream_okx` subscribes to OKX's public ``tickers`` channel over a WebSocket and hands
each update to a callback, reconnecting with backoff and keeping a quiet connection alive;
:func:`okx_quotes` turns one push into quotes; a :class:`LiveFeed` holds a symbol's latest
quote until the data agent's next slot for it. Nothing here runs in the offline modes.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from .quotes import Quote, quote

__all__ = ["LiveFeed", "okx_quotes", "stream_okx"]

# Module constants, so tests (and impatient users) can shorten them.
RECONNECT_MIN = 0.5  # seconds before the first reconnection attempt
RECONNECT_MAX = 30.0  # the backoff doubles up to this
KEEPALIVE = 20.0  # send OKX's "ping" after this long without a message (it closes at 30 s)

log = logging.getLogger("loom.demo.data")  # the data agent's: this is one of its sources


class LiveFeed:
    """The latest live quote of a symbol, taken once: updates between slots conflate."""

    source = "okx"

    def __init__(self) -> None:
        self._latest: Quote | None = None

    def update(self, latest: Quote) -> None:
        self._latest = latest

    def next_quote(self) -> Quote | None:
        latest, self._latest = self._latest, None
        return latest


def okx_quotes(message: dict[str, Any]) -> list[tuple[str, Quote]]:
    """``(instId, quote)`` for each ticker of an OKX ``tickers`` push (none for events).

    ``volume`` is the size of the last trade (``lastSz``, 0 when absent); an empty
    ``bidPx``/``askPx`` falls back to the last price and the demo's spread.

    Raises:
        KeyError, ValueError: a ticker without ``instId``, ``last`` or ``ts``.
    """
    if message.get("arg", {}).get("channel") != "tickers" or "data" not in message:
        return []
    quotes = []
    for item in message["data"]:
        last = float(item["last"])
        fallback = quote(last, 0.0, 0.0)
        quotes.append(
            (
                item["instId"],
                Quote(
                    price=last,
                    bid=float(item.get("bidPx") or fallback.bid),
                    ask=float(item.get("askPx") or fallback.ask),
                    volume=float(item.get("lastSz") or 0.0),
                    ts=float(item["ts"]) / 1000,
                ),
            )
        )
    return quotes


async def stream_okx(
    url: str,
    symbols: Sequence[str],
    on_quote: Callable[[str, Quote], None],
    logger: logging.Logger | logging.LoggerAdapter = log,
) -> None:
    """Stream OKX tickers of ``symbols`` into ``on_quote`` until cancelled.

    Reconnects after any failure, waiting :data:`RECONNECT_MIN` seconds, doubling up to
    :data:`RECONNECT_MAX`, back to the minimum once a connection delivered a ticker.
    Sends OKX's ``"ping"`` after :data:`KEEPALIVE` quiet seconds and drops a connection
    that stays quiet that long again (WebSocket pings run underneath as well).
    """
    from websockets.asyncio.client import connect  # only the live mode needs it
    from websockets.exceptions import InvalidURI, WebSocketException

    subscribe = json.dumps(
        {"op": "subscribe", "args": [{"channel": "tickers", "instId": s} for s in symbols]}
    )
    delay = RECONNECT_MIN
    while True:
        try:
            async with connect(url) as ws:
                await ws.send(subscribe)
                logger.info("okx: connected to %s, subscribing to %s", url, ", ".join(symbols))
                async for message in _okx_messages(ws, logger):
                    for symbol, latest in message:
                        on_quote(symbol, latest)
                    delay = RECONNECT_MIN  # a good connection: start the backoff afresh
        except InvalidURI:
            raise
        except (OSError, TimeoutError, WebSocketException) as exc:
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            logger.warning(
                "okx: disconnected from %s (%s); reconnecting in %g s", url, reason, delay
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX)


async def _okx_messages(
    ws: Any, logger: logging.Logger | logging.LoggerAdapter
) -> AsyncIterator[list[tuple[str, Quote]]]:
    """The ticker batches of a connection, forever; answers pongs, events and keepalive."""
    quiet = False
    while True:
        try:
            async with asyncio.timeout(KEEPALIVE):
                raw = await ws.recv()
        except TimeoutError:
            if quiet:
                raise TimeoutError(f"no message for {2 * KEEPALIVE:g} s, not even a pong") from None
            quiet = True
            await ws.send("ping")
            continue
        quiet = False
        if raw == "pong":
            continue
        try:
            message = json.loads(raw)
            if message.get("event") == "error":
                logger.warning("okx: %s (code %s)", message.get("msg"), message.get("code"))
            yield okx_quotes(message)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            logger.warning("okx: skipped a malformed message (%s): %.200r", exc, raw)
