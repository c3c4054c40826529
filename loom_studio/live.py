"""The live system in a few numbers, as JSON: what JupyterLab's Loom sidebar lists.

``GET /api/live`` on the studio's server answers::

    {"bus": {"address": "tcp://127.0.0.1:7355", "embedded": false},  # null: not joined yet
     "events_per_s": 118.0,
     "agents": [{"id": "data", "status": "running", "rate": 50.0, "handled": 0,
                 "errors": 0, "last_error": ""}, ...],
     "topics": [{"pattern": "market.price.*", "rate": 50.0}, ...]}

An agent's ``rate`` is the events per second it publishes, a topic family's the events
per second published on it, both over the feed's ``rate_window`` (the topology's
figures). ``embedded`` says the studio started the bus itself: no bus ran for the
project when it joined.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from tornado.web import RequestHandler

from .dashboard import DEFAULT_HEARTBEAT, STALE_BEATS, agent_frame
from .feed import StudioFeed

__all__ = ["LiveHandler", "live_summary"]


def live_summary(feed: StudioFeed, now: float | None = None) -> dict[str, Any]:
    """The agents (status as the dashboard shows it, publish rate) and topic families
    (publish rate) the feed sees, and the bus it watches."""
    runtime = feed.runtime
    interval = runtime.config.runtime.heartbeat_interval if runtime else DEFAULT_HEARTBEAT
    agents = agent_frame(feed.agents, time.time() if now is None else now, STALE_BEATS * interval)
    by_agent: Counter[str] = Counter()
    by_topic: Counter[str] = Counter()
    for (source, target), rate in feed.edge_rates().items():
        if feed.nodes.get(target) == "topic":  # a publish (the other edges are deliveries)
            by_agent[source] += rate
            by_topic[target] += rate
    bus = None
    if runtime is not None:
        address = runtime.address.publish if runtime.address else ""
        bus = {"address": address, "embedded": runtime.embedded}
    return {
        "bus": bus,
        "events_per_s": feed.throughput(),
        "agents": [
            {
                "id": agent_id,
                "status": row["status"] or "unknown",
                "rate": round(by_agent[agent_id], 2),
                "handled": int(row["handled"]),
                "errors": int(row["errors"]),
                "last_error": row["last error"],
            }
            for agent_id, row in agents.iterrows()
        ],
        "topics": [
            {"pattern": name, "rate": round(by_topic[name], 2)}
            for name, kind in sorted(feed.nodes.items())
            if kind == "topic"
        ],
    }


class LiveHandler(RequestHandler):
    """``GET``: :func:`live_summary` of the server's feed, never cached."""

    def initialize(self, feed: StudioFeed) -> None:
        self.feed = feed

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(live_summary(self.feed)))
