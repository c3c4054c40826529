"""Replay: recorded events published again, into a namespace, at their own pace.

>>> result = await replay(log, rt.client, ReplayPlan(since=timedelta(hours=1),
...                       namespace="what-if", speed=10))            # doctest: +SKIP

Each event goes out on ``replay.<namespace>.<topic>`` as it was recorded (source, id,
sequence number, thread, correlation, trace context, data), with a fresh ``ts`` (so
TTLs and latencies read as live), its recorded time in the header
``loom-replayed-ts``, and its ``reply_to`` moved into the namespace too: agents of the
namespace (:mod:`.namespace`) answer there, never to the real system. Events are
spaced as they were, divided by ``speed`` (0: as fast as possible).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..bus.transport import Transport
from ..protocol import reserved
from ..protocol.envelope import Envelope
from .store import EventLog, When
from .wire import ACK_HEADER

__all__ = ["REPLAYED_TS_HEADER", "ReplayPlan", "ReplayResult", "replay"]

#: Header of a replayed event: when it was first published (ns since the epoch).
REPLAYED_TS_HEADER = "loom-replayed-ts"
_PAGE = 2000
_YIELD_EVERY = 500  # events published between two turns of the loop at full speed


@dataclass(frozen=True)
class ReplayPlan:
    """What to replay: a time range, topic patterns (None: all), the namespace, the pace."""

    namespace: str
    since: When = None
    until: When = None
    topics: Sequence[str] | None = None
    speed: float = 1.0


@dataclass(frozen=True)
class ReplayResult:
    published: int
    seconds: float
    first_ts: int
    last_ts: int


async def replay(
    log: EventLog,
    transport: Transport,
    plan: ReplayPlan,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> ReplayResult:
    """Publish the events of ``plan`` from ``log`` on ``transport`` (see the module doc);
    ``progress(done, about_total)`` is called after every page."""
    loop = asyncio.get_running_loop()
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-replay")
    prefix = reserved.replay_prefix(plan.namespace)
    started = loop.time()
    published, first_ts, last_ts, after = 0, 0, 0, 0
    try:
        total = await loop.run_in_executor(reader, log.count, plan.since, plan.until)
        while True:
            query = functools.partial(
                log.query, plan.since, plan.until, plan.topics, after_pos=after, limit=_PAGE
            )
            page = await loop.run_in_executor(reader, query)
            if not page:
                break
            for item in page:
                env = item.event
                first_ts = first_ts or env.ts
                last_ts, after = env.ts, item.pos
                await _wait_turn(loop, started, (env.ts - first_ts) / 1e9, plan.speed, published)
                transport.publish(_into_namespace(env, prefix))
                published += 1
            progress(published, max(total, published))
    finally:
        await loop.run_in_executor(reader, log.close)
        reader.shutdown(wait=False)
    return ReplayResult(published, loop.time() - started, first_ts, last_ts)


async def _wait_turn(
    loop: asyncio.AbstractEventLoop, started: float, offset: float, speed: float, done: int
) -> None:
    if speed > 0:
        delay = started + offset / speed - loop.time()
        if delay > 0.0005:
            await asyncio.sleep(delay)
            return
    if done % _YIELD_EVERY == 0:
        await asyncio.sleep(0)


def _into_namespace(env: Envelope, prefix: str) -> Envelope:
    headers = {k: v for k, v in (env.headers or {}).items() if k != ACK_HEADER}
    headers[REPLAYED_TS_HEADER] = str(env.ts)
    env.topic = prefix + env.topic
    if env.reply_to:
        env.reply_to = prefix + env.reply_to
    env.ts = time.time_ns()
    env.headers = headers
    return env
