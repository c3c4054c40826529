"""The event log service on a real bus: what it records, its acks, its statistics."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loom_kernel import Agent, BusError, ConfigError, LoomError, open_runtime
from loom_kernel.config import EventLogConfig, load_config
from loom_kernel.durability import EventLog, EventLogService, open_event_log
from loom_kernel.errors import LoomTimeoutError
from tests.conftest import WAIT


def configure(project: Path, eventlog: str) -> Path:
    path = project / "loom.toml"
    path.write_text(
        f"[runtime]\nheartbeat_interval = 0.2\n\n[eventlog]\nenabled = true\n{eventlog}"
    )
    return path


async def test_the_bus_process_records_events_but_not_heartbeats(project: Path) -> None:
    async with open_runtime(configure(project, "")) as rt:
        service = await rt.start_event_log()
        assert service is not None
        beats = await rt.subscribe("loom.agent.*.heartbeat")
        for i in range(200):
            await rt.emit("orders.new", {"i": i})
        await rt.start(Agent("beating"))
        await beats.get(timeout=WAIT)
        await _wait_recorded(service, 200)
        found = rt.event_log.query(limit=10_000)
        assert [item.event.data["i"] for item in found if item.event.topic == "orders.new"] == list(
            range(200)
        )
        assert not rt.event_log.query(topics=["loom.agent.*.heartbeat"])
        assert service.statistics().dropped == 0
    assert (project / ".loom" / "events.db").is_file()


async def test_topics_and_exclude_choose_what_is_recorded(project: Path) -> None:
    settings = 'topics = ["orders.*", "prices.*"]\nexclude = ["prices.secret"]\n'
    async with open_runtime(configure(project, settings)) as rt:
        service = await rt.start_event_log()
        for topic in ("orders.new", "prices.btc", "news.today", "prices.secret", "orders.paid"):
            await rt.emit(topic, {})
        await _wait_recorded(service, 3)
        topics = [item.event.topic for item in rt.event_log.query()]
        assert topics == ["orders.new", "prices.btc", "orders.paid"]


async def test_statistics_are_published_on_the_bus(project: Path) -> None:
    async with open_runtime(configure(project, "")) as rt:
        await rt.start_event_log()
        stats = await rt.subscribe("loom.eventlog.stats")
        await rt.emit("orders.new", {})
        while (event := await stats.get(timeout=WAIT)).data["recorded"] < 1:
            pass
        assert {"received", "recorded", "pending", "dropped", "rate"} <= set(event.data)


async def test_a_second_recorder_of_the_same_file_is_refused(project: Path) -> None:
    async with open_runtime(configure(project, "")) as rt:
        await rt.start_event_log()
        with pytest.raises(LoomError, match="recorded by another process"):
            await open_event_log(rt.config.eventlog, project / ".loom" / "events.db", rt.client)


def test_a_bad_pattern_in_the_settings_names_the_key(project: Path) -> None:
    path = configure(project, 'topics = ["orders..new"]\n')
    settings = load_config(path).eventlog
    with pytest.raises(ConfigError, match=r"\[eventlog\] topics"):
        EventLogService(settings, EventLog(project / "e.db"))


def test_reliable_topics_without_the_log_are_refused() -> None:
    with pytest.raises(ValueError, match="enabled = true"):
        EventLogConfig(enabled=False, reliable=["orders.*"])


async def test_reliable_events_are_acknowledged_by_the_log(project: Path) -> None:
    async with open_runtime(configure(project, 'reliable = ["orders.*"]\n')) as rt:
        await rt.start_event_log()
        for i in range(500):
            await rt.emit("orders.new", {"i": i})
        await rt.wait_acknowledged(WAIT)
        stats = rt.transport.statistics().durability
        assert stats["acked"] == 500 and stats["in_flight"] == 0


async def test_events_the_log_did_not_take_are_sent_again(project: Path) -> None:
    settings = 'embedded = false\nreliable = ["orders.*"]\nack_timeout = 0.1\n'
    async with open_runtime(configure(project, settings)) as rt:
        assert await rt.start_event_log() is None  # embedded = false: `loom log`'s job
        for i in range(50):
            await rt.emit("orders.new", {"i": i})
        with pytest.raises(LoomTimeoutError, match="not acknowledged"):
            await rt.wait_acknowledged(0.3)
        # the log starts late (as `loom log` would): it gets them from the publisher
        service = await open_event_log(rt.config.eventlog, project / "late.db", rt.client)
        try:
            await rt.wait_acknowledged(WAIT)
            assert rt.transport.statistics().durability["resent"] >= 50
            await service.flush(WAIT)
            found = service.log.query(topics=["orders.*"])
            assert sorted(item.event.data["i"] for item in found) == list(range(50))
        finally:
            await service.aclose()


async def test_in_flight_events_are_bounded(project: Path) -> None:
    settings = 'embedded = false\nreliable = ["orders.*"]\nmax_in_flight = 100\nack_timeout = 0.1\n'
    async with open_runtime(configure(project, settings)) as rt:
        for i in range(100):
            await rt.emit("orders.new", {"i": i})
        with pytest.raises(BusError, match="max_in_flight"):
            await rt.emit("orders.new", {"i": 100})
        await rt.emit("prices.btc", {})  # other topics are not held back
        assert rt.transport.statistics().durability["in_flight"] == 100


async def _wait_recorded(service, count: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while service.statistics().recorded < count:
        assert loop.time() < deadline, f"{service.statistics()} after {WAIT} s"
        await service.flush(WAIT)
        await asyncio.sleep(0.01)
