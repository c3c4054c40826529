"""Collaboration patterns built on the envelope's correlation and reply-to fields.

- :func:`fan_out`: send requests, gather replies (all, the first k, or what arrived
  before the timeout).
- :func:`fan_in`: wait for events on several patterns (first k, or one per pattern).
- :func:`barrier`: wait until ``parties`` agents reached the same named point.
- :func:`contract_net`: call for proposals, collect bids, award the best, collect results;
  :func:`bid` is the bidder's side.

All of them take the agent's :class:`~loom_kernel.context.Context` (each is also a
``ctx`` method) and work across processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .client import ReplyBox
from .envelope import Envelope, new_id
from .errors import LoomTimeoutError
from .topics import validate_topic

if TYPE_CHECKING:
    from .context import Context

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
        return [event.data for event in self.events]

    def __len__(self) -> int:
        return len(self.events)


async def fan_out(
    ctx: Context,
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
    client = ctx.client
    box = ReplyBox()
    correlations = [new_id() for _ in pairs]
    for correlation in correlations:
        client.expect_replies(ctx.inbox, correlation, box)
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout
    replies: list[Envelope] = []
    try:
        for (topic, payload), correlation in zip(pairs, correlations, strict=True):
            ctx._publish(
                topic, payload, type="request", correlation_id=correlation, reply_to=ctx.inbox
            )
        while want is None or len(replies) < want:
            if not await box.wait(deadline):
                break
            while box.items and (want is None or len(replies) < want):
                replies.append(box.items.popleft())
    finally:
        for correlation in correlations:
            client.forget(ctx.inbox, correlation)
    answered = {reply.correlation_id for reply in replies}
    return FanInResult(
        events=replies,
        complete=want is not None and len(replies) >= want,
        missing=[t for (t, _), c in zip(pairs, correlations, strict=True) if c not in answered],
        elapsed=loop.time() - started,
    )


async def fan_in(
    ctx: Context,
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
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout
    subs = [await ctx.client.subscribe(p, owner=ctx.agent_id) for p in patterns]
    got: dict[str, Envelope] = {}
    events: list[Envelope] = []
    queue: asyncio.Queue[tuple[str, Envelope]] = asyncio.Queue()
    failures: asyncio.Queue[Exception] = asyncio.Queue()

    async def pump(pattern: str, sub: Any) -> None:
        async for event in sub:
            try:
                keep = where is None or where(event)
            except Exception as exc:  # the caller's filter failed: surface it, don't hang
                failures.put_nowait(exc)
                return
            if keep:
                queue.put_nowait((pattern, event))

    pumps = [asyncio.create_task(pump(p, s)) for p, s in zip(patterns, subs, strict=True)]
    try:
        while True:
            if first is not None and len(events) >= first:
                break
            if first is None and len(got) == len(patterns):
                break
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            getter = asyncio.ensure_future(queue.get())
            failed = asyncio.ensure_future(failures.get())
            done, _ = await asyncio.wait(
                {getter, failed}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
            for waiter in (getter, failed):
                if waiter not in done:
                    waiter.cancel()
            if failed in done:
                raise failed.result()
            if getter not in done:
                break
            pattern, event = getter.result()
            if first is None:
                if pattern in got:
                    continue
                got[pattern] = event
            else:
                got.setdefault(pattern, event)
            events.append(event)
    finally:
        for sub in subs:
            await sub.aclose()
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
    want = first if first is not None else len(patterns)
    return FanInResult(
        events=events,
        complete=len(events) >= want,
        missing=[p for p in patterns if p not in got],
        elapsed=loop.time() - started,
    )


async def barrier(ctx: Context, name: str, parties: int, *, timeout: float = 10.0) -> list[str]:
    """Wait until ``parties`` distinct agents called ``barrier`` with the same ``name``.

    Returns the ids of the parties. Use a fresh name per round (``f"step-{n}"``).

    Raises:
        BarrierTimeout: fewer parties arrived in time (the message names who did).
    """
    if parties < 1:
        raise ValueError(f"a barrier needs at least 1 party, got {parties}")
    topic = f"loom.barrier.{name}"
    validate_topic(topic)
    seen = {ctx.agent_id}
    async with await ctx.client.subscribe(topic, owner=ctx.agent_id) as sub:
        ctx._publish(topic, {"party": ctx.agent_id}, type="barrier")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(seen) < parties:
            remaining = deadline - loop.time()
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
                ctx._publish(topic, {"party": ctx.agent_id}, type="barrier")
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
        return [bid.source for bid in self.awarded]


def _bid_score(bid: Envelope) -> float:
    data = bid.data if isinstance(bid.data, dict) else {}
    score = data.get("score", 0.0)
    return float(score) if isinstance(score, int | float) else 0.0


async def contract_net(
    ctx: Context,
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
    client = ctx.client
    loop = asyncio.get_running_loop()
    cfp_id = new_id()
    box = client.expect_replies(ctx.inbox, cfp_id)
    bids: list[Envelope] = []
    try:
        ctx._publish(topic, task, type="cfp", correlation_id=cfp_id, reply_to=ctx.inbox)
        deadline = loop.time() + bid_timeout
        while expected_bids is None or len(bids) < expected_bids:
            if not await box.wait(deadline):
                break
            while box.items:
                bids.append(box.items.popleft())
    finally:
        client.forget(ctx.inbox, cfp_id)
    ranked = sorted(bids, key=score, reverse=True)
    awarded, rejected = ranked[:max_awards], ranked[max_awards:]
    boxes = [client.expect_replies(ctx.inbox, b.id) for b in awarded]
    results: list[Envelope] = []
    try:
        for winner in awarded:
            ctx._publish(
                winner.reply_to or "",
                task,
                type="award",
                correlation_id=winner.id,
                reply_to=ctx.inbox,
            )
        for loser in rejected:
            ctx._publish(loser.reply_to or "", None, type="reject", correlation_id=loser.id)
        deadline = loop.time() + result_timeout
        for result_box in boxes:
            if await result_box.wait(deadline):
                results.append(result_box.items.popleft())
    finally:
        for winner in awarded:
            client.forget(ctx.inbox, winner.id)
    complete = bool(awarded) and len(results) == len(awarded)  # no bids: nothing completed
    return ContractResult(bids, awarded, results, complete=complete)


async def bid(
    ctx: Context, cfp: Envelope, score: float, data: Any = None, *, timeout: float = 5.0
) -> Envelope | None:
    """Bid on a call for proposals; returns the award, or None if rejected or no answer.

    Reply to the award with ``await ctx.reply(award, result)``.
    """
    bid_id = new_id()
    box = ctx.client.expect_replies(ctx.inbox, bid_id)
    try:
        ctx._publish(
            cfp.reply_to or "",
            {"score": score, "data": data},
            type="bid",
            correlation_id=cfp.correlation_id or cfp.id,
            reply_to=ctx.inbox,
            thread_id=cfp.thread_id or cfp.id,
            event_id=bid_id,
        )
        loop = asyncio.get_running_loop()
        if not await box.wait(loop.time() + timeout):
            return None
        answer = box.items.popleft()
    finally:
        ctx.client.forget(ctx.inbox, bid_id)
    return answer if answer.type == "award" else None
