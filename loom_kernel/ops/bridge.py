"""Two buses as one, for chosen topics: a ZeroMQ bus (a notebook on a laptop) and a NATS
cluster, joined both ways by ``loom bridge``.

A :class:`Bridge` holds one transport on each side and forwards

- the events matching its ``out`` patterns from the first side (``a``) to the second
  (``b``), and those matching ``into`` from ``b`` to ``a``;
- the replies to requests it forwarded, back to the side the request came from (it
  remembers each forwarded request's ``reply_to`` for ``reply_ttl`` seconds), so an
  agent on one side calls a tool or asks an agent on the other as if it were local.

An event keeps everything it was published with: its id, source, sequence number,
thread and correlation, and its W3C trace context (``traceparent``/``tracestate``), so a
trace crosses the bridge in one piece and receivers still count gaps per source. The
bridge adds one thing, the header ``loom-via``: the ids of the bridges it crossed. A
bridge never forwards an event that already crossed it, so a topic bridged both ways
(or two bridges between the same buses) cannot loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass

import msgspec

from ..bus.transport import Subscription, Transport
from ..errors import BusError, LoomError
from ..protocol import reserved
from ..protocol.envelope import Envelope
from ..protocol.topics import compile_pattern

__all__ = ["VIA_HEADER", "Bridge", "BridgeStatistics"]

log = logging.getLogger("loom.bridge")
#: The header listing the bridges an event crossed (comma-separated ids).
VIA_HEADER = "loom-via"
_REPLIES_KEPT = 100_000  # forwarded requests whose replies the bridge still expects


@dataclass
class BridgeStatistics:
    """What a bridge did since it started."""

    a_to_b: int = 0
    b_to_a: int = 0
    replies: int = 0
    loops: int = 0  # events that had crossed this bridge already: not forwarded again
    failed: int = 0  # events the target bus refused (too big, closed)

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Bridge:
    """Forwards events between two transports (see the module docstring).

    Args:
        a: the first bus's transport (``loom bridge``: the project's ZeroMQ bus).
        b: the second's (``loom bridge``: the NATS cluster).
        out: patterns forwarded from ``a`` to ``b``.
        into: patterns forwarded from ``b`` to ``a``.
        bridge_id: this bridge's id in ``loom-via`` (default: a random one).
        reply_ttl: seconds a forwarded request's replies are forwarded back.

    Raises:
        TopicError: a bad pattern (named).
        LoomError: no pattern at all (the bridge would do nothing).
    """

    def __init__(
        self,
        a: Transport,
        b: Transport,
        *,
        out: list[str],
        into: list[str],
        bridge_id: str | None = None,
        reply_ttl: float = 60.0,
    ):
        if not out and not into:
            raise LoomError(
                "a bridge with no pattern forwards nothing: name topics with --out (to NATS) "
                "and/or --in (from NATS), e.g. --out 'orders.*' --in 'signals.*'"
            )
        for pattern in [*out, *into]:
            compile_pattern(pattern)
        self.a, self.b = a, b
        self.out, self.into = list(out), list(into)
        self.bridge_id = bridge_id or f"bridge-{os.urandom(4).hex()}"
        self.reply_ttl = reply_ttl
        self.stats = BridgeStatistics()
        self._subs: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        # inbox topic -> (the side its replies go back to, until when)
        self._inboxes: OrderedDict[str, tuple[Transport, float]] = OrderedDict()

    async def start(self) -> None:
        """Subscribe on both sides; forwarding runs from then on."""
        for source, target, patterns, count in (
            (self.a, self.b, self.out, "a_to_b"),
            (self.b, self.a, self.into, "b_to_a"),
        ):
            for pattern in patterns:
                await self._listen(source, pattern, target, count)
            # replies to requests forwarded from the other side come back through here
            await self._listen(source, f"{reserved.REPLY_PREFIX}*", None, "replies")

    async def _listen(
        self, source: Transport, pattern: str, target: Transport | None, count: str
    ) -> None:
        sub = await source.subscribe(pattern, qos="reliable", owner=self.bridge_id)
        self._subs.append(sub)
        name = f"loom:bridge:{pattern}"
        self._tasks.append(
            asyncio.get_running_loop().create_task(self._pump(sub, target, count), name=name)
        )

    async def _pump(self, sub: Subscription, target: Transport | None, count: str) -> None:
        async for env in sub:
            try:
                self._forward(env, target, count)
            except BusError as exc:  # too big for the other bus, or it closed
                self.stats.failed += 1
                log.warning("the bridge could not forward %r: %s", env.topic, exc)

    def _forward(self, env: Envelope, target: Transport | None, count: str) -> None:
        via = (env.headers or {}).get(VIA_HEADER, "")
        if self.bridge_id in via.split(","):
            self.stats.loops += 1
            return
        if target is None:  # a reply: only to requests this bridge forwarded
            back = self._inboxes.get(env.topic)
            if back is None or back[1] < time.monotonic():
                return
            target = back[0]
        elif env.reply_to:
            source = self.a if target is self.b else self.b
            self._remember(env.reply_to, source)
        headers = {**(env.headers or {}), VIA_HEADER: f"{via},{self.bridge_id}".lstrip(",")}
        target.publish(msgspec.structs.replace(env, headers=headers, v=0))
        setattr(self.stats, count, getattr(self.stats, count) + 1)

    def _remember(self, inbox: str, side: Transport) -> None:
        self._inboxes[inbox] = (side, time.monotonic() + self.reply_ttl)
        self._inboxes.move_to_end(inbox)
        while len(self._inboxes) > _REPLIES_KEPT:
            self._inboxes.popitem(last=False)

    def statistics(self) -> BridgeStatistics:
        return self.stats

    async def aclose(self) -> None:
        """Stop forwarding (the transports are the caller's to close)."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.aclose()
        self._tasks.clear()
        self._subs.clear()

    async def __aenter__(self) -> Bridge:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
