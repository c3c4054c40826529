"""Collaboration patterns built on the envelope's correlation and reply-to fields.

- :func:`fan_out`: send requests, gather replies (all, the first k, or what arrived
  before the timeout).
- :func:`fan_in`: wait for events on several patterns (first k, or one per pattern).
- :func:`barrier`: wait until ``parties`` agents reached the same named point.
- :func:`contract_net`: call for proposals, collect bids, award the best, collect results;
  :func:`bid` is the bidder's side.

All of them take an :class:`~loom_kernel.messaging.endpoint.Endpoint` (each is also a
``ctx`` method: ``await ctx.fan_out(...)``), work across processes, and record a span of
their own (a gathering's span links every event it gathered).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..bus.transport import ReplyBox, Subscription
from ..errors import LoomTimeoutError
from ..protocol import reserved
from ..protocol.envelope import Envelope, new_id
from ..protocol.spans import Span, parse_traceparent
from ..protocol.topics import validate_topic
from .endpoint import Endpoint

__all__ = [
    "BarrierTimeout",
    "ContractResult",
    "FanInResult",
    "barrier",
    "bid",
    "contract_net",
    "fan_in",
    "fan_out",
]


class BarrierTimeout(LoomTimeoutError):
    """Not every party reached the barrier in time."""


@dataclass
class FanInResult:
    """What a fan-out or fan-in gathered.

    Attributes:
        events: replies (fan-out) or events (fan-in), in arrival order.
        complete: True when the wanted number arrived before the timeout.
        missing: the topics (fan-out) or patterns (fan-in) with nothing yet.
        elapsed: seconds waited.
    """

    events: list[Envelope]
    complete: bool
    missing: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def data(self) -> list[Any]:
        """The data of the gathered events, in arrival order."""
        return [event.data for event in self.events]

    def __len__(self) -> int:
        return len(self.events)


@contextlib.contextmanager
def _pattern_span(endpoint: Endpoint, pattern: str) -> Iterator[Span | None]:
    with endpoint.tracer.span(
        pattern, agent=endpoint.source, attributes={"loom.pattern": pattern}
    ) as span:
        yield span


def _describe_gathering(span: Span | None, result: FanInResult) -> None:
    """A gathering's span links every event it gathered (each is its own causal chain)."""
    if span is None:
        return
    span.set_attribute("loom.gathered", len(result.events))
    span.set_attribute("loom.complete", result.complete)
    if result.missing:
        span.set_attribute("loom.missing", list(result.missing))
    for event in result.events:
        link = parse_traceparent(event.traceparent)
        if link is not None:
            span.add_link(link[0], link[1])


async def fan_out(
    endpoint: Endpoint,
    requests: Sequence[tuple[str, Any]] | str,
    data: Any = None,
    *,
    first: int | None = None,
    timeout: float = 5.0,
) -> FanInResult:
    """Send requests and gather their replies; never raises on timeout.

    Args:
        requests: ``[(topic, data), ...]``, or one topic (with ``data``) that any number
            of agents may answer.
        first: stop after this many replies. Default: one reply per request for a list;
            everything until the timeout for a single broadcast topic.
        timeout: seconds to wait; the result holds what arrived (``complete=False``).
    """
    pairs = [(requests, data)] if isinstance(requests, str) else list(requests)
    for topic, _ in pairs:
        validate_topic(topic)
    want = first if first is not None else (None if isinstance(requests, str) else len(pairs))
    with _pattern_span(endpoint, "fan_out") as span:
        result = await _gather_replies(endpoint, pairs, want, timeout)
        _describe_gathering(span, result)
        return result


async def _gather_replies(
    endpoint: Endpoint, pairs: list[tuple[str, Any]], want: int | None, timeout: float
) -> FanInResult:
    box = ReplyBox()
    correlations = [new_id() for _ in pairs]
    for correlation in correlations:
        endpoint.expect_replies(correlation, box)
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout
    replies: list[Envelope] = []
    try:
        for (topic, payload), correlation in zip(pairs, correlations, strict=True):
            endpoint.send(
                Envelope(
                    topic=topic,
                    data=payload,
                    type="request",
                    correlation_id=correlation,
                    reply_to=endpoint.inbox,
                )
            )
        while want is None or len(replies) < want:
            if not await box.wait(deadline):
                break
            while box.items and (want is None or len(replies) < want):
                replies.append(box.items.popleft())
    finally:
        for correlation in correlations:
            endpoint.forget(correlation)
    answered = {reply.correlation_id for reply in replies}
    return FanInResult(
        events=replies,
        complete=want is not None and len(replies) >= want,
        missing=[t for (t, _), c in zip(pairs, correlations, strict=True) if c not in answered],
        elapsed=loop.time() - started,
    )


async def fan_in(
    endpoint: Endpoint,
    patterns: Sequence[str],
    *,
    first: int | None = None,
    timeout: float = 5.0,
    where: Callable[[Envelope], bool] | None = None,
) -> FanInResult:
    """Wait for events on several patterns; never raises on timeout.

    Args:
        patterns: topic patterns to listen on (subscribed before waiting starts).
        first: return after this many events; default: one event per pattern.
        where: keep only events for which this returns True (e.g. one symbol).
    """
    with _pattern_span(endpoint, "fan_in") as span:
        loop = asyncio.get_running_loop()
        started = loop.time()
        subs = [await endpoint.transport.subscribe(p, owner=endpoint.source) for p in patterns]
        gathering = _Gathering(list(patterns), subs, where)
        try:
            events = await gathering.collect(first, started + timeout)
        finally:
            await gathering.aclose()
        want = first if first is not None else len(patterns)
        result = FanInResult(
            events=events,
            complete=len(events) >= want,
            missing=[p for p in patterns if p not in gathering.got],
            elapsed=loop.time() - started,
        )
        _describe_gathering(span, result)
        return result


class _Gathering:
    """The subscriptions of one fan-in, pumped into one queue."""

    def __init__(
        self,
        patterns: list[str],
        subs: list[Subscription],
        where: Callable[[Envelope], bool] | None,
    ):
        self.patterns = patterns
        self.subs = subs
        self.where = where
        self.got: dict[str, Envelope] = {}
        self.queue: asyncio.Queue[tuple[str, Envelope]] = asyncio.Queue()
        self.failures: asyncio.Queue[Exception] = asyncio.Queue()
        self.pumps = [
            asyncio.create_task(self._pump(p, s), name=f"loom:fan_in:{p}")
            for p, s in zip(patterns, subs, strict=True)
        ]

    async def _pump(self, pattern: str, sub: Subscription) -> None:
        async for event in sub:
            try:
                keep = self.where is None or self.where(event)
            except Exception as exc:  # the caller's filter failed: surface it, don't hang
                self.failures.put_nowait(exc)
                return
            if keep:
                self.queue.put_nowait((pattern, event))

    async def collect(self, first: int | None, deadline: float) -> list[Envelope]:
        events: list[Envelope] = []
        loop = asyncio.get_running_loop()
        while not self._enough(first, events):
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            arrived = await self._next(remaining)
            if arrived is None:
                break
            pattern, event = arrived
            if first is None:
                if pattern in self.got:
                    continue
                self.got[pattern] = event
            else:
                self.got.setdefault(pattern, event)
            events.append(event)
        return events

    def _enough(self, first: int | None, events: list[Envelope]) -> bool:
        if first is not None:
            return len(events) >= first
        return len(self.got) == len(self.patterns)

    async def _next(self, timeout: float) -> tuple[str, Envelope] | None:
        """The next kept event, None at the timeout; the filter's error if it raised."""
        getter = asyncio.ensure_future(self.queue.get())
        failed = asyncio.ensure_future(self.failures.get())
        done, _ = await asyncio.wait(
            {getter, failed}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for waiter in (getter, failed):
            if waiter not in done:
                waiter.cancel()
        if failed in done:
            raise failed.result()
        return getter.result() if getter in done else None

    async def aclose(self) -> None:
        for sub in self.subs:
            await sub.aclose()
        for task in self.pumps:
            task.cancel()
        await asyncio.gather(*self.pumps, return_exceptions=True)


async def barrier(
    endpoint: Endpoint, name: str, parties: int, *, timeout: float = 10.0
) -> list[str]:
    """Wait until ``parties`` distinct agents called ``barrier`` with the same ``name``.

    Returns the ids of the parties. Use a fresh name per round (``f"step-{n}"``).

    Raises:
        BarrierTimeout: fewer parties arrived in time (the message names who did).
    """
    if parties < 1:
        raise ValueError(f"a barrier needs at least 1 party, got {parties}")
    topic = reserved.barrier(name)
    validate_topic(topic)
    me = endpoint.source
    seen = {me}
    with _pattern_span(endpoint, "barrier"):
        async with await endpoint.transport.subscribe(topic, owner=me) as sub:
            endpoint.send(Envelope(topic=topic, data={"party": me}, type="barrier"))
            deadline = asyncio.get_running_loop().time() + timeout
            while len(seen) < parties:
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    event = await sub.get(max(remaining, 0))
                except TimeoutError:
                    raise BarrierTimeout(
                        f"barrier {name!r}: {len(seen)} of {parties} parties arrived within "
                        f"{timeout:g} s ({', '.join(sorted(seen))})"
                    ) from None
                party = event.data.get("party") if isinstance(event.data, dict) else None
                if party and party not in seen:
                    seen.add(party)
                    # Re-announce, so a party that subscribed after our first arrival sees us.
                    endpoint.send(Envelope(topic=topic, data={"party": me}, type="barrier"))
    return sorted(seen)


@dataclass
class ContractResult:
    """The outcome of a contract-net round.

    Attributes:
        bids: every bid received (``bid.data`` = ``{"score": ..., "data": ...}``).
        awarded: the winning bids, best first.
        results: the winners' replies to their award, in arrival order.
        complete: True when there was a winner and every winner replied in time.
    """

    bids: list[Envelope]
    awarded: list[Envelope]
    results: list[Envelope]
    complete: bool

    @property
    def winners(self) -> list[str]:
        """The ids of the bidders that were awarded the task."""
        return [bid.source for bid in self.awarded]


def _bid_score(bid: Envelope) -> float:
    data = bid.data if isinstance(bid.data, dict) else {}
    score = data.get("score", 0.0)
    return float(score) if isinstance(score, int | float) else 0.0


async def contract_net(
    endpoint: Endpoint,
    topic: str,
    task: Any = None,
    *,
    bid_timeout: float = 1.0,
    max_awards: int = 1,
    expected_bids: int | None = None,
    score: Callable[[Envelope], float] = _bid_score,
    result_timeout: float = 10.0,
) -> ContractResult:
    """Run one contract-net round as the manager.

    1. Publish a call for proposals (``type="cfp"``) with ``task`` on ``topic``.
    2. Collect bids for ``bid_timeout`` seconds (or until ``expected_bids`` arrived).
    3. Award the ``max_awards`` best bids by ``score`` (default: the bid's ``score``),
       reject the rest.
    4. Wait up to ``result_timeout`` for the winners' results.
    """
    validate_topic(topic)
    if max_awards < 1:
        raise ValueError(f"max_awards must be at least 1, got {max_awards}")
    with _pattern_span(endpoint, "contract_net"):
        bids = await _collect_bids(endpoint, topic, task, bid_timeout, expected_bids)
        ranked = sorted(bids, key=score, reverse=True)
        awarded, rejected = ranked[:max_awards], ranked[max_awards:]
        results = await _award(endpoint, task, awarded, rejected, result_timeout)
    complete = bool(awarded) and len(results) == len(awarded)  # no bids: nothing completed
    return ContractResult(bids, awarded, results, complete=complete)


async def _collect_bids(
    endpoint: Endpoint, topic: str, task: Any, timeout: float, expected: int | None
) -> list[Envelope]:
    cfp_id = new_id()
    box = endpoint.expect_replies(cfp_id)
    bids: list[Envelope] = []
    try:
        endpoint.send(
            Envelope(
                topic=topic, data=task, type="cfp", correlation_id=cfp_id, reply_to=endpoint.inbox
            )
        )
        deadline = asyncio.get_running_loop().time() + timeout
        while expected is None or len(bids) < expected:
            if not await box.wait(deadline):
                break
            while box.items:
                bids.append(box.items.popleft())
    finally:
        endpoint.forget(cfp_id)
    return bids


async def _award(
    endpoint: Endpoint,
    task: Any,
    awarded: list[Envelope],
    rejected: list[Envelope],
    timeout: float,
) -> list[Envelope]:
    boxes = [endpoint.expect_replies(b.id) for b in awarded]
    results: list[Envelope] = []
    try:
        for winner in awarded:
            endpoint.send(
                Envelope(
                    topic=winner.reply_to or "",
                    data=task,
                    type="award",
                    correlation_id=winner.id,
                    reply_to=endpoint.inbox,
                )
            )
        for loser in rejected:
            endpoint.send(
                Envelope(topic=loser.reply_to or "", type="reject", correlation_id=loser.id)
            )
        deadline = asyncio.get_running_loop().time() + timeout
        for result_box in boxes:
            if await result_box.wait(deadline):
                results.append(result_box.items.popleft())
    finally:
        for winner in awarded:
            endpoint.forget(winner.id)
    return results


async def bid(
    endpoint: Endpoint, cfp: Envelope, score: float, data: Any = None, *, timeout: float = 5.0
) -> Envelope | None:
    """Bid on a call for proposals; returns the award, or None if rejected or no answer.

    Reply to the award with ``await ctx.reply(award, result)``.
    """
    bid_id = new_id()
    box = endpoint.expect_replies(bid_id)
    with _pattern_span(endpoint, "bid"):
        try:
            endpoint.send(
                Envelope(
                    topic=cfp.reply_to or "",
                    data={"score": score, "data": data},
                    type="bid",
                    correlation_id=cfp.correlation_id or cfp.id,
                    reply_to=endpoint.inbox,
                    thread_id=cfp.thread_id or cfp.id,
                    id=bid_id,
                )
            )
            if not await box.wait(asyncio.get_running_loop().time() + timeout):
                return None
            answer = box.items.popleft()
        finally:
            endpoint.forget(bid_id)
    return answer if answer.type == "award" else None
