"""Replay: recorded events published again into an isolated namespace."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest

from loom_kernel import Agent, LoomError, TopicError, on_event, open_runtime
from loom_kernel.cli.eventlog import parse_when
from loom_kernel.durability import REPLAYED_TS_HEADER, ReplayPlan, replay
from loom_kernel.security import generate_keys
from tests.conftest import PYTHON, WAIT, python_env

pytestmark = pytest.mark.multiprocess


class Watcher(Agent):
    """Collects what it handles on ``orders.*`` and answers each with ``orders.seen``."""

    def __init__(self, agent_id: str):
        super().__init__(agent_id)
        self.got: asyncio.Queue = asyncio.Queue()

    @on_event("orders.*")
    async def watch(self, event, ctx):
        self.got.put_nowait(event)
        if event.topic == "orders.new":
            await ctx.emit("orders.seen", {"of": event.topic})


def configure(project: Path, security: str = "none") -> Path:
    path = project / "loom.toml"
    path.write_text(
        f'[bus]\nsecurity = "{security}"\n'
        "[runtime]\nheartbeat_interval = 0.2\n[eventlog]\nenabled = true\n"
    )
    if security == "curve" and not (project / ".loom" / "keys" / "loom.key").exists():
        for name in ("broker", "loom"):
            generate_keys(project / ".loom" / "keys", name)
    return path


async def record(rt, count: int) -> float:
    """Publish ``count`` orders and a price; returns when they are in the log."""
    started = time.time()
    for i in range(count):
        await rt.emit("orders.new", {"i": i})
    await rt.emit("prices.btc", {"p": 1})
    service = await rt.start_event_log()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while service.statistics().recorded < count + 1:
        assert loop.time() < deadline, "events not recorded"
        await service.flush(WAIT)
        await asyncio.sleep(0.01)
    return started


async def drain(queue: asyncio.Queue, count: int) -> list:
    return [await asyncio.wait_for(queue.get(), WAIT) for _ in range(count)]


@pytest.mark.parametrize("security", ["none", "curve"])  # replays keep recorded sources
async def test_loom_replay_reaches_the_namespace_and_nothing_else(
    project: Path, security: str
) -> None:
    async with open_runtime(configure(project, security)) as rt:
        started = await record(rt, 20)
        real, inside = Watcher("real"), Watcher("inside")
        await rt.start(real)
        async with open_runtime(configure(project, security), namespace="what-if") as sandbox:
            await sandbox.start(inside)
            done = await asyncio.to_thread(
                subprocess.run,
                [PYTHON, "-m", "loom_kernel.cli.app", "replay", "--from", str(started - 1),
                 "--topics", "orders.*", "--speed", "0", "--into", "what-if"],
                cwd=project, env=python_env(), capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert "replayed 20 events into replay.what-if.*" in done.stderr
            events = await drain(inside.got, 40)  # the 20 replayed, and its own 20 answers
        replayed = [e for e in events if e.topic == "orders.new"]
        assert [e.data["i"] for e in replayed] == list(range(20))
        assert all(REPLAYED_TS_HEADER in (e.headers or {}) for e in replayed)
        assert sum(e.topic == "orders.seen" for e in events) == 20
        await rt.emit("orders.marker", {})
        marker = await asyncio.wait_for(real.got.get(), WAIT)
        assert marker.topic == "orders.marker", f"the real system saw {marker.topic}"
        assert real.got.empty()


async def test_replay_keeps_the_recorded_pace_divided_by_speed(project: Path) -> None:
    async with open_runtime(configure(project)) as rt:
        await record(rt, 5)
        sub = await rt.subscribe("replay.fast.*")
        plan = ReplayPlan(namespace="fast", topics=["orders.*", "prices.*"], speed=0)
        result = await replay(rt.event_log, rt.client, plan)
        assert result.published == 6
        topics = [(await sub.get(WAIT)).topic for _ in range(6)]
        assert topics == ["replay.fast.orders.new"] * 5 + ["replay.fast.prices.btc"]


def test_replay_times_are_read_as_documented() -> None:
    now = time.time()
    assert abs(parse_when("10m", "--from") - (now - 600)) < 5
    assert parse_when("1700000000", "--from") == 1_700_000_000
    assert parse_when("2026-01-31T09:30:00+00:00", "--from") == 1_769_851_800
    with pytest.raises(LoomError, match="duration ago"):
        parse_when("yesterday", "--from")


def test_replay_refuses_bad_input_with_the_fix(project: Path) -> None:
    def loom(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-m", "loom_kernel.cli.app", "replay", *args],
            cwd=project, env=python_env(), capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    bad_into = loom("--from", "1m", "--into", "a.b")
    assert bad_into.returncode != 0 and "one topic segment" in bad_into.stderr
    no_log = loom("--from", "1m")
    assert no_log.returncode != 0 and "no event log" in no_log.stderr


async def test_a_namespace_must_be_one_segment(project: Path) -> None:
    with pytest.raises((TopicError, ValueError)):
        open_runtime(configure(project), namespace="a.b")
