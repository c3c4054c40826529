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
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from ..bus.transport import Transport
from ..protocol import reserved
from ..protocol.envelope import Envelope
from .store import EventLog, When
from .wire import ACK_HEADER

__all__ = ["REPLAYED_TS_HEADER", "History", "ReplayPlan", "ReplayResult", "replay"]

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


class History(Protocol):
    """Where replayed events come from: :class:`~.jetstream_history.StreamHistory` (NATS);
    the SQLite :class:`~.store.EventLog` is read through :class:`_LogHistory`."""

    async def count(self, since: When = None, until: When = None) -> int: ...

    def pages(
        self, since: When = None, until: When = None, topics: Sequence[str] | None = None
    ) -> AsyncIterator[list[Envelope]]: ...

    async def aclose(self) -> None: ...


class _LogHistory:
    """The SQLite event log as a :class:`History` (its queries on a thread of their own)."""

    def __init__(self, log: EventLog):
        self.log = log
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-replay")

    async def count(self, since: When = None, until: When = None) -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self.log.count, since, until)

    async def pages(
        self, since: When = None, until: When = None, topics: Sequence[str] | None = None
    ) -> AsyncIterator[list[Envelope]]:
        loop = asyncio.get_running_loop()
        after = 0
        while True:
            query = functools.partial(
                self.log.query, since, until, topics, after_pos=after, limit=_PAGE
            )
            page = await loop.run_in_executor(self._reader, query)
            if not page:
                return
            after = page[-1].pos
            yield [item.event for item in page]

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._reader, self.log.close)
        self._reader.shutdown(wait=False)


async def replay(
    source: EventLog | History,
    transport: Transport,
    plan: ReplayPlan,
    progress: Callable[[int, int], None] = lambda done, total: None,
) -> ReplayResult:
    """Publish the events of ``plan`` from ``source`` (the event log, or JetStream's stream
    on NATS) on ``transport`` (see the module doc); ``progress(done, about_total)`` is
    called after every page."""
    history = _LogHistory(source) if isinstance(source, EventLog) else source
    loop = asyncio.get_running_loop()
    prefix = reserved.replay_prefix(plan.namespace)
    started = loop.time()
    published, first_ts, last_ts = 0, 0, 0
    try:
        total = await history.count(plan.since, plan.until)
        async for page in history.pages(plan.since, plan.until, plan.topics):
            for env in page:
                first_ts = first_ts or env.ts
                last_ts = env.ts
                await _wait_turn(loop, started, (env.ts - first_ts) / 1e9, plan.speed, published)
                transport.publish(_into_namespace(env, prefix))
                published += 1
            progress(published, max(total, published))
    finally:
        await history.aclose()
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
