"""The studio's view of the bus: an observer agent feeding bounded, batched state.

Every view of the studio reads a :class:`StudioFeed`; none of them touches the bus.
The feed's observer agent subscribes to every topic (``*``, realtime: when the studio
cannot keep up, the oldest events are dropped and counted, the agents never wait) and
keeps:

- the agents, from their heartbeats (``loom.agent.<id>.heartbeat``) and last errors;
  observer agents (their heartbeat says ``observer``: they watch the system, like the
  terminal view of the demo) apart, in ``observers``, and out of the topology;
- the last ``max_events`` events, with a sequence number views stream from;
- per-second throughput and latency history for the QoS panel (``history_sec``);
- the topology: agents, topic families and MCP servers as nodes, edges counted from
  the traffic (publishes from envelopes, deliveries and tool calls from the spans
  published on ``loom.trace.spans.*``), with rates over the last ``rate_window`` s.

Memory stays flat: every collection is bounded. Views poll the feed at most ~10 times
a second (:data:`REFRESH_MS`) and take only what changed since their last look.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loom_kernel import Agent, LoomConfig, load_config, on_event, open_runtime
from loom_kernel.tracing import export_loss

from .tenant import TenantView

if TYPE_CHECKING:
    from loom_kernel import Envelope, Runtime

__all__ = ["REFRESH_MS", "EventRow", "StudioFeed", "get_feed", "topic_family"]

REFRESH_MS = 100  # views refresh at most 10 times a second
INTERNAL = "loom."
OBSERVER = "studio-"  # the studio's own observer agents
_WORD = re.compile(r"[a-z_]+")


def topic_family(topic: str) -> str:
    """The topology node of a topic: its family, one node for every instance of it.

    The last segment names an instance (``*`` stands for it) when the topic has three
    segments or more (``market.price.AAPL`` -> ``market.price.*``), or two and the last
    is not a lower-case word (``plan.AAPL`` -> ``plan.*``, ``user.42`` -> ``user.*``).
    Two words stay apart: ``pp.ping`` and ``pp.pong`` are two channels, not two instances.
    """
    parts = topic.split(".")
    if len(parts) >= 3 or (len(parts) == 2 and not _WORD.fullmatch(parts[1])):
        return ".".join(parts[:-1]) + ".*"
    return topic


@dataclass(frozen=True)
class EventRow:
    """One event as the event stream shows it."""

    seq: int
    ts: float  # epoch seconds, as published
    topic: str
    source: str
    type: str
    id: str
    size: int
    data: Any

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Second:
    """What happened during one wall-clock second."""

    events: int = 0
    by_topic: Counter[str] = field(default_factory=Counter)


class StudioFeed:
    """Bounded state of the bus, updated by :class:`StudioObserver`.

    Args:
        max_events: events kept for the event stream, and for the payload of a row clicked
            on a page that shows it late (a loaded page or server may be seconds behind).
        history_sec: seconds of per-second QoS history.
        rate_window: seconds over which topology edge rates are computed.
        tenant: show only this tenant's part of the bus (``loom studio --tenant``).
    """

    def __init__(
        self,
        *,
        max_events: int = 10_000,
        history_sec: int = 300,
        rate_window: int = 10,
        tenant: TenantView | None = None,
    ):
        self.tenant = tenant
        self.max_events = max_events
        self.rate_window = rate_window
        self.events: deque[EventRow] = deque(maxlen=max_events)
        self.seq = 0
        self.agents: dict[str, dict[str, Any]] = {}
        self.observers: dict[str, dict[str, Any]] = {}  # observer agents, as ``agents``
        self.errors: deque[dict[str, Any]] = deque(maxlen=200)
        self.tools: dict[str, list[dict[str, Any]]] = {}  # process -> its announced tools
        self.history: deque[dict[str, Any]] = deque(maxlen=history_sec)
        self.edges: dict[tuple[str, str], Counter[int]] = {}  # (from, to) -> count per second
        self.nodes: dict[str, str] = {}  # node -> kind: agent | topic | mcp
        self.broker: dict[str, Any] = {}
        self.tracing: dict[str, dict[str, Any]] = {}  # process -> its tracing statistics
        self._second = int(time.time())
        self._current = _Second()
        self.ingested = 0
        self.runtime: Runtime | None = None
        self._owns_runtime = False

    # -- ingesting ------------------------------------------------------------------------

    def ingest(self, event: Envelope) -> None:
        """Take one event off the bus (the observer calls this for every event)."""
        self.ingested += 1
        self._tick(time.time())
        if self.tenant is not None and not self.tenant.admits(event):
            return
        topic = event.topic
        if topic.startswith(INTERNAL):
            self._internal(event)
            return
        self._current.events += 1
        self._current.by_topic[topic] += 1
        self.seq += 1
        self.events.append(
            EventRow(
                self.seq, (event.ts or time.time_ns()) / 1e9, topic, event.source, event.type,
                event.id, len(event.payload or b""), event.data,
            )
        )  # fmt: skip
        if event.type not in ("reply", "error") and event.source:
            family = topic_family(topic)
            self._edge(event.source, "agent", family, "topic")

    def _internal(self, event: Envelope) -> None:
        parts = event.topic.split(".")
        data = event.data if isinstance(event.data, dict) else {}
        if parts[1] == "agent" and parts[-1] == "heartbeat" and data:
            self._heartbeat(parts[2], data)
        elif parts[1] == "agent" and parts[-1] == "error" and data:
            self.errors.append({**data, "ts": event.ts / 1e9 if event.ts else time.time()})
            rows = self.observers if parts[2] in self.observers else self.agents
            rows.setdefault(parts[2], {})["last_error"] = (
                f"{data.get('error')}: {data.get('message')}"
            )
        elif event.topic == "loom.broker.stats" and data:
            self.broker = data
        elif parts[1] == "client" and parts[-1] == "stats" and data:
            self.tracing[str(data.get("client_id") or event.source)] = data.get("tracing") or {}
        elif event.topic == "loom.tools.changed" and data:
            self.tools[str(data.get("process"))] = list(data.get("tools") or [])
        elif parts[1] == "trace" and isinstance(event.data, list):
            for span in event.data:
                self._span(span)

    def tracing_notes(self) -> list[str]:
        """Spans lost on the way to an OTLP backend, one sentence per process that lost some."""
        notes = (export_loss(process, stats) for process, stats in sorted(self.tracing.items()))
        return [note for note in notes if note]

    def _heartbeat(self, agent_id: str, data: dict[str, Any]) -> None:
        if agent_id.startswith(OBSERVER):
            return  # the studio watching itself
        observer = bool(data.get("observer"))  # absent (older kernels): an agent
        rows, others = (self.observers, self.agents) if observer else (self.agents, self.observers)
        row = rows.setdefault(agent_id, others.pop(agent_id, {}))  # an error may come first
        row.update(data)
        row["seen"] = time.time()
        if not observer:  # an observer is drawn only if it publishes (then it is in the flow)
            self.nodes.setdefault(agent_id, "agent")

    def _span(self, span: Any) -> None:
        # span arrays: see loom_kernel/spans.py (name, kind, agent, attributes)
        with contextlib.suppress(IndexError, TypeError, AttributeError):
            name, kind, agent, attributes = span[3], span[4], span[10], span[11]
            if not agent:
                return
            if kind in ("consumer", "server") and name.startswith("handle "):
                topic = attributes.get("messaging.destination.name", name[7:])
                if not topic.startswith(INTERNAL):
                    self._edge(topic_family(topic), "topic", agent, "agent")
            elif (
                kind == "client" and name.startswith("tool ") and attributes.get("mcp.server.name")
            ):
                self._edge(agent, "agent", f"mcp:{attributes['mcp.server.name']}", "mcp")

    def _edge(self, source: str, source_kind: str, target: str, target_kind: str) -> None:
        if source.startswith(OBSERVER) or target.startswith(OBSERVER):
            return  # the studio watching itself is not part of the system's picture
        self.nodes.setdefault(source, source_kind)
        self.nodes.setdefault(target, target_kind)
        counts = self.edges.setdefault((source, target), Counter())
        counts[self._second] += 1

    def _tick(self, now: float) -> None:
        second = int(now)
        if second == self._second:
            return
        self._close_second()
        self._second = second
        self._current = _Second()
        horizon = second - self.rate_window
        for counts in self.edges.values():
            for old in [s for s in counts if s < horizon]:
                del counts[old]

    def _close_second(self) -> None:
        beats = [row for row in self.agents.values() if time.time() - row.get("seen", 0) < 5]
        self.history.append(
            {
                "t": self._second,
                "events": self._current.events,
                "p50_ms": max((row.get("latency_p50_ms", 0.0) for row in beats), default=0.0),
                "p99_ms": max((row.get("latency_p99_ms", 0.0) for row in beats), default=0.0),
                "dropped": sum(row.get("dropped", 0) for row in beats),
                "lost": sum(row.get("lost", 0) for row in beats),
            }
        )

    # -- reading --------------------------------------------------------------------------

    def events_since(self, seq: int, pattern: str | None = None) -> list[EventRow]:
        """Events newer than ``seq`` (matching ``pattern`` when given), oldest first."""
        from loom_kernel import topic_matches

        rows = []  # from the newest back: a refresh costs what came since, not what is kept
        for row in reversed(self.events):
            if row.seq <= seq:
                break
            rows.append(row)
        rows.reverse()
        if pattern:
            rows = [row for row in rows if topic_matches(pattern, row.topic)]
        return rows

    def event(self, seq: int) -> EventRow | None:
        """The event numbered ``seq``, while the feed still holds it (the last ``max_events``)."""
        if not self.events or not self.events[0].seq <= seq <= self.events[-1].seq:
            return None
        row = self.events[seq - self.events[0].seq]  # numbered one by one as they came
        return row if row.seq == seq else None

    def edge_rates(self) -> dict[tuple[str, str], float]:
        """Events per second along each edge, over the last ``rate_window`` seconds."""
        horizon = int(time.time()) - self.rate_window
        return {
            edge: sum(n for s, n in counts.items() if s >= horizon) / self.rate_window
            for edge, counts in self.edges.items()
        }

    def throughput(self) -> float:
        """Events per second over the last complete second."""
        return float(self.history[-1]["events"]) if self.history else 0.0

    def statistics(self) -> dict[str, Any]:
        """What the feed took in, keeps and dropped, and its observer agent's statistics."""
        observer = self.runtime.agents.get(self.observer_id) if self.runtime else None
        stats = observer.statistics() if observer else None
        return {
            "ingested": self.ingested,
            "events_kept": len(self.events),
            "agents": len(self.agents),
            "observers": len(self.observers),
            "nodes": len(self.nodes),
            "edges": len(self.edges),
            "dropped": stats.dropped if stats else 0,
        }

    # -- joining the bus --------------------------------------------------------------------

    @property
    def observer_id(self) -> str:
        """The id of the observer agent that feeds this process's studio components."""
        return f"{OBSERVER}{os.getpid()}"

    async def attach(self, runtime: Runtime) -> None:
        """Observe the bus of an open runtime (a notebook's, say)."""
        self.runtime = runtime
        if self.observer_id not in runtime.agents:
            await runtime.start(StudioObserver(self, self.observer_id))

    async def open(self, config: LoomConfig | str | os.PathLike[str] | None = None) -> StudioFeed:
        """Join the project's bus (found through ``loom.toml`` and ``.loom/bus.json``, or
        started here when none runs yet, for agents to join) and observe it."""
        settings = config if isinstance(config, LoomConfig) else load_config(config)
        runtime = await open_runtime(settings)
        self._owns_runtime = True
        await self.attach(runtime)
        return self

    async def aclose(self) -> None:
        """Stop feeding: stop the observer agent (and the runtime, if the feed opened it)."""
        if self.runtime is None:
            return
        if self._owns_runtime:
            await self.runtime.aclose()
        elif self.observer_id in self.runtime.agents:
            with contextlib.suppress(Exception):
                await self.runtime.stop(self.observer_id)
        self.runtime = None


class StudioObserver(Agent):
    """Feeds a :class:`StudioFeed` from every topic; emits nothing."""

    traced = False  # an observer: no spans of its own in the workflows it watches

    def __init__(self, feed: StudioFeed, agent_id: str):
        super().__init__(agent_id)
        self.feed = feed

    @on_event("*", qos="realtime", mailbox_size=20_000)
    async def observe(self, event: Envelope, ctx: Any) -> None:
        self.feed.ingest(event)


_feeds: dict[int, StudioFeed] = {}
_opening: set[asyncio.Task[Any]] = set()


def get_feed(
    config: LoomConfig | str | os.PathLike[str] | None = None, *, runtime: Runtime | None = None
) -> StudioFeed:
    """The feed of this process and event loop, created on first use.

    It joins the bus in the background (the views show "connecting" until then): on
    ``runtime`` when one is given (a notebook's), else by discovery from ``config``.
    """
    loop = asyncio.get_event_loop()
    feed = _feeds.get(id(loop))
    stale = feed is not None and (
        (runtime is not None and feed.runtime is not None and feed.runtime is not runtime)
        or (feed.runtime is not None and getattr(feed.runtime, "_closed", False))
    )
    if feed is None or stale:
        feed = _feeds[id(loop)] = StudioFeed()
        start = feed.attach(runtime) if runtime is not None else feed.open(config)
        task = loop.create_task(start)
        _opening.add(task)
        task.add_done_callback(_opened)
    return feed


def _opened(task: asyncio.Task[Any]) -> None:
    _opening.discard(task)
    if not task.cancelled() and task.exception() is not None:
        import logging

        logging.getLogger("loom.studio").error(
            "the studio could not join the bus: %s", task.exception()
        )
