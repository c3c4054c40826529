"""The live summary JupyterLab's sidebar lists: a real feed fed real envelopes, and a real
feed on a real runtime's bus."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

import pytest

from loom_kernel import Runtime
from loom_kernel.protocol.envelope import Envelope, encode_data
from loom_studio.feed import StudioFeed
from loom_studio.live import live_summary

pytestmark = pytest.mark.timeout(60)

_ids = itertools.count(1)


def event(topic: str, data: Any = None, *, source: str, type: str = "event") -> Envelope:
    payload, content_type = encode_data(data)
    return Envelope(
        topic=topic, data=data, payload=payload, content_type=content_type, source=source,
        type=type, ts=time.time_ns(), id=f"e-{next(_ids)}",
    )  # fmt: skip


def heartbeat(agent_id: str, **fields: Any) -> Envelope:
    stats = {"agent_id": agent_id, "status": "running", "handled": 0, "errors": 0}
    stats.update(fields)
    return event(f"loom.agent.{agent_id}.heartbeat", stats, source=agent_id, type="heartbeat")


def test_agents_have_their_status_and_publish_rate_and_topics_their_rate() -> None:
    feed = StudioFeed(rate_window=10)
    feed.ingest(heartbeat("sensor", handled=3))
    feed.ingest(heartbeat("monitor", status="failed", errors=2, last_error="ValueError: hot"))
    for n in range(30):
        feed.ingest(event("sensor.temp.kitchen", {"n": n}, source="sensor"))
    for n in range(10):
        feed.ingest(event("alert.temp.kitchen", {"n": n}, source="monitor"))
    feed.ingest(event("sensor.temp.kitchen", source="monitor", type="reply"))  # not a publish

    summary = json.loads(json.dumps(live_summary(feed)))  # what the endpoint sends

    assert summary["bus"] is None  # the feed has not joined a bus
    assert summary["agents"] == [
        {"id": "monitor", "status": "failed", "rate": 1.0, "handled": 0, "errors": 2,
         "last_error": "ValueError: hot"},
        {"id": "sensor", "status": "running", "rate": 3.0, "handled": 3, "errors": 0,
         "last_error": ""},
    ]  # fmt: skip
    assert summary["topics"] == [
        {"pattern": "alert.temp.*", "rate": 1.0},
        {"pattern": "sensor.temp.*", "rate": 3.0},
    ]


def test_an_agent_whose_heartbeats_stopped_shows_as_silent() -> None:
    feed = StudioFeed()
    feed.ingest(heartbeat("sensor"))
    later = time.time() + 60
    (agent,) = live_summary(feed, now=later)["agents"]
    assert agent["status"] == "silent"


async def test_a_studio_alone_on_its_own_bus_says_no_bus_ran(rt: Runtime) -> None:
    # `rt` embeds the project's bus, as the studio does when no bus runs for the project
    feed = StudioFeed()
    await feed.attach(rt)
    try:
        summary = live_summary(feed)
    finally:
        await feed.aclose()
    assert summary["bus"] == {"address": rt.address.publish, "embedded": True}
    assert summary["agents"] == []  # the studio's own observer is not one of the system's
    assert summary["topics"] == []
