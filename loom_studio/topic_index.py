"""Every topic the bus carried: counts, rates, publishers, recent events, inferred schemas,
and which agents subscribe to what.

The topic explorer and the editor read a :class:`TopicIndex`. Its observer agent,
``studio-topics-<pid>``, takes every event (``*``, realtime: the oldest are dropped when
the studio cannot keep up, the agents never wait) and keeps, per topic:

- the number of events and their count per second (the rate over ``rate_window`` s);
- the sources that published on it (its publishers);
- the last ``last_n`` events with their payloads;
- the payload's JSON schema, inferred with `genson <https://pypi.org/project/genson/>`_
  from the first ``SCHEMA_SAMPLES`` payloads, then one a second (a schema merges what
  it has seen: a field absent from some events is not ``required``).

From the heartbeats it keeps what each agent runs: the patterns it subscribes to, its
module and class, its code's version and its process (``loom_kernel.runtime.heartbeat``).
Every collection is bounded (``max_topics`` topics; past it, new topics are counted in
``overflow``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from genson import SchemaBuilder

from loom_kernel import Agent, TopicError, on_event
from loom_kernel.protocol import compile_pattern, reserved

if TYPE_CHECKING:
    from loom_kernel import Envelope, Runtime

__all__ = ["EventSample", "TopicIndex", "TopicObserver", "TopicStats", "get_topic_index"]

log = logging.getLogger("loom.studio")

SCHEMA_SAMPLES = 50  # payloads every topic's schema learns from, before one a second
OBSERVER_PREFIX = "studio-topics-"  # "studio-": the dashboard leaves it out of its agents


@dataclass(frozen=True)
class EventSample:
    """One recent event of a topic, as the explorer lists it."""

    ts: float  # epoch seconds
    source: str
    type: str
    id: str
    data: Any


@dataclass
class TopicStats:
    """What the index knows of one topic."""

    topic: str
    last_n: int
    count: int = 0
    per_second: Counter[int] = field(default_factory=Counter)
    publishers: Counter[str] = field(default_factory=Counter)
    events: deque[EventSample] = field(init=False)
    schema: SchemaBuilder = field(default_factory=SchemaBuilder)
    samples: int = 0  # payloads the schema learned from
    _sampled_at: int = 0

    def __post_init__(self) -> None:
        self.events = deque(maxlen=self.last_n)

    def add(self, event: Envelope, now: float) -> None:
        self.count += 1
        second = int(now)
        self.per_second[second] += 1
        if event.type not in ("reply", "error"):
            self.publishers[event.source or "?"] += 1
        data = event.data
        ts = event.ts / 1e9 if event.ts else now
        self.events.append(EventSample(ts, event.source, event.type, event.id, data))
        if self.samples < SCHEMA_SAMPLES or second != self._sampled_at:
            with contextlib.suppress(Exception):  # bytes, NaN...: nothing a schema can say
                self.schema.add_object(_jsonable(data))
                self.samples += 1
                self._sampled_at = second

    def rate(self, now: float, window: int) -> float:
        """Events per second over the last ``window`` complete seconds."""
        last = int(now) - 1
        return sum(n for s, n in self.per_second.items() if last - window < s <= last) / window

    def forget_before(self, second: int) -> None:
        for old in [s for s in self.per_second if s < second]:
            del self.per_second[old]

    def json_schema(self) -> dict[str, Any]:
        return self.schema.to_schema() if self.samples else {}


def _jsonable(data: Any) -> Any:
    if isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("binary payload")
    return data


class TopicIndex:
    """Bounded state of every topic seen, fed by :class:`TopicObserver`.

    Args:
        last_n: events kept per topic.
        rate_window: seconds over which rates are computed.
        max_topics: topics kept; later new topics are only counted (``overflow``).
    """

    def __init__(self, *, last_n: int = 20, rate_window: int = 10, max_topics: int = 5000):
        self.last_n = last_n
        self.rate_window = rate_window
        self.max_topics = max_topics
        self.topics: dict[str, TopicStats] = {}
        self.agents: dict[str, dict[str, Any]] = {}  # agent id -> its last heartbeat
        self.reloads: deque[dict[str, Any]] = deque(maxlen=200)  # loom.agent.*.reloaded
        self.overflow = 0
        self.ingested = 0
        self.changed = 0  # bumped when the set of topics changes
        self.runtime: Runtime | None = None
        self._second = int(time.time())

    def ingest(self, event: Envelope) -> None:
        """Take one event off the bus."""
        now = time.time()
        self.ingested += 1
        topic = event.topic
        if topic.startswith(reserved.LOOM_PREFIX):
            self._report(event, now)
        stats = self.topics.get(topic)
        if stats is None:
            if len(self.topics) >= self.max_topics:
                self.overflow += 1
                return
            stats = self.topics[topic] = TopicStats(topic, self.last_n)
            self.changed += 1
        stats.add(event, now)
        if int(now) != self._second:
            self._second = int(now)
            for each in self.topics.values():
                each.forget_before(self._second - self.rate_window - 1)

    def _report(self, event: Envelope, now: float) -> None:
        parts = event.topic.split(".")
        data = event.data if isinstance(event.data, dict) else None
        if data is None or len(parts) != 4 or parts[1] != "agent":
            return
        if parts[3] == "heartbeat" and not parts[2].startswith("studio-"):
            self.agents[parts[2]] = {**data, "seen": now}
        elif parts[3] == "reloaded":
            self.reloads.append({**data, "agent": parts[2], "seen": now})

    # -- reading ----------------------------------------------------------------------------

    def names(self, *, reserved_too: bool = False) -> list[str]:
        """The topics seen, sorted; Loom's own (``loom.…``) only when asked."""
        return sorted(
            t for t in self.topics if reserved_too or not t.startswith(reserved.LOOM_PREFIX)
        )

    def rate(self, topic: str, now: float | None = None) -> float:
        stats = self.topics.get(topic)
        return stats.rate(now or time.time(), self.rate_window) if stats else 0.0

    def matching(self, pattern: str, *, reserved_too: bool = True) -> list[str]:
        """The topics seen that ``pattern`` matches, with the kernel's own matcher.

        Raises:
            TopicError: the pattern is not valid (the message says why).
        """
        compiled = compile_pattern(pattern)
        return [t for t in self.names(reserved_too=reserved_too) if compiled.matches(t)]

    def subscribers(self, topic: str) -> list[tuple[str, str]]:
        """``(agent, pattern)`` for every pattern of a live agent that matches ``topic``."""
        found = []
        for agent_id in sorted(self.agents):
            beat = self.agents[agent_id]
            if beat.get("status") in ("stopped", "failed"):
                continue
            for pattern in beat.get("patterns") or []:
                with contextlib.suppress(TopicError):
                    if compile_pattern(pattern).matches(topic):
                        found.append((agent_id, pattern))
        return found

    def agents_of(self, module: str) -> dict[str, dict[str, Any]]:
        """The live agents whose heartbeat says they run a class of ``module``."""
        return {
            agent_id: beat
            for agent_id, beat in self.agents.items()
            if beat.get("module") == module and beat.get("status") not in ("stopped", "failed")
        }

    # -- joining the bus --------------------------------------------------------------------

    @property
    def observer_id(self) -> str:
        return f"{OBSERVER_PREFIX}{os.getpid()}"

    async def attach(self, runtime: Runtime) -> None:
        """Observe the bus of an open runtime."""
        self.runtime = runtime
        if self.observer_id not in runtime.agents or runtime.status(self.observer_id) in (
            "stopped",
            "failed",
        ):
            await runtime.start(TopicObserver(self, self.observer_id))


class TopicObserver(Agent):
    """Feeds a :class:`TopicIndex` from every topic; emits nothing."""

    traced = False  # an observer: no spans of its own in the workflows it watches

    def __init__(self, index: TopicIndex, agent_id: str):
        super().__init__(agent_id)
        self.index = index

    @on_event("*", qos="realtime", mailbox_size=20_000)
    async def observe(self, event: Envelope, ctx: Any) -> None:
        self.index.ingest(event)


_indexes: dict[int, TopicIndex] = {}
_attaching: set[asyncio.Task[Any]] = set()
ATTACH_WAIT_S = 30.0  # how long an index waits for its runtime to open


def get_topic_index(runtime: Runtime | Callable[[], Runtime | None]) -> TopicIndex:
    """The topic index of this process and event loop, created on first use.

    Args:
        runtime: the runtime whose bus it observes, or a callable returning it once it
            is open (the standalone studio's feed opens its runtime in the background).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no event loop (a script building a page): nothing to observe with
        return TopicIndex()
    index = _indexes.get(id(loop))
    given = None if callable(runtime) else runtime
    stale = index is not None and (
        (given is not None and index.runtime is not None and index.runtime is not given)
        or (index.runtime is not None and getattr(index.runtime, "_closed", False))
    )
    if index is None or stale:
        index = _indexes[id(loop)] = TopicIndex()
        task = loop.create_task(_attach(index, runtime))
        _attaching.add(task)
        task.add_done_callback(_attached)
    return index


async def _attach(index: TopicIndex, runtime: Any) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ATTACH_WAIT_S
    found = runtime() if callable(runtime) else runtime
    while found is None:
        if loop.time() > deadline:
            raise TimeoutError(f"no runtime to observe within {ATTACH_WAIT_S:g} s")
        await asyncio.sleep(0.05)
        found = runtime()
    await index.attach(found)


def _attached(task: asyncio.Task[Any]) -> None:
    _attaching.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("the topic explorer could not join the bus: %s", task.exception())
