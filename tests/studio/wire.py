"""Envelopes as the bus carries them to the studio's feed: events, heartbeats and span
batches, built the way the kernel builds them."""

from __future__ import annotations

import itertools
import time
from typing import Any

from loom_kernel.protocol.envelope import Envelope, encode_data

_ids = itertools.count(1)


def event(topic: str, data: Any = None, *, source: str = "feeder", type: str = "event") -> Envelope:
    payload, content_type = encode_data(data)
    return Envelope(
        topic=topic, data=data, payload=payload, content_type=content_type, source=source,
        type=type, ts=time.time_ns(), id=f"e-{next(_ids)}",
    )  # fmt: skip


def heartbeat(agent_id: str, **fields: Any) -> Envelope:
    stats = {
        "agent_id": agent_id, "status": "running", "handled": 0, "errors": 0, "emitted": 0,
        "queue_depth": 0, "dropped": 0, "lost": 0, "latency_p50_ms": 0.0,
        "latency_p99_ms": 0.0, "handler_p50_ms": 0.0, "handler_p99_ms": 0.0,
        "last_error": None, "uptime_s": 1.0,
    }  # fmt: skip
    stats.update(fields)
    return event(f"loom.agent.{agent_id}.heartbeat", stats, source=agent_id, type="heartbeat")


def span(name: str, kind: str, agent: str, attributes: dict[str, Any]) -> list[Any]:
    """A span array as published on ``loom.trace.spans.*`` (loom_kernel/spans.py)."""
    now = time.time_ns()
    return ["ab" * 16, "cd" * 8, None, name, kind, now, now + 1000, "ok", "", "svc", agent,
            attributes, [], [], True]  # fmt: skip


def spans(*items: list[Any]) -> Envelope:
    return event("loom.trace.spans.x", list(items), source="x", type="spans")


def delivered(topic: str, agent: str) -> list[Any]:
    return span(f"handle {topic}", "consumer", agent, {"messaging.destination.name": topic})
