"""The loop watchdog: a handler that blocks the event loop is reported ``stalled``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from loom_kernel import Agent, Runtime, on_event, open_runtime
from tests.kernel.conftest import WAIT

pytestmark = pytest.mark.timeout(30)

STALL_AFTER = 0.3
BLOCK = 1.2  # seconds the handler blocks the loop: well past stall_after


class Blocker(Agent):
    def __init__(self) -> None:
        super().__init__("blocker")
        self.ended_ns = 0

    @on_event("block.now")
    async def block(self, event, ctx) -> None:
        # the mistake the watchdog is for: a long computation with no await stops the loop
        deadline = time.monotonic() + BLOCK
        while time.monotonic() < deadline:
            pass
        self.ended_ns = time.time_ns()


class Bystander(Agent):
    @on_event("nothing.here")
    async def nothing(self, event, ctx) -> None: ...


@pytest.fixture
async def rt(project: Path):
    (project / "loom.toml").write_text(
        f"[runtime]\nheartbeat_interval = 0.1\nstall_after = {STALL_AFTER}\n"
    )
    async with open_runtime(project / "loom.toml") as runtime:
        yield runtime


async def test_a_handler_blocking_the_loop_is_reported_stalled_while_it_blocks(rt: Runtime):
    blocker = Blocker()
    await rt.start(blocker, Bystander("bystander"))
    beats = await rt.subscribe("loom.agent.*.heartbeat")
    await rt.emit("block.now")

    during: dict[str, dict] = {}
    after: dict[str, dict] = {}
    while len(after) < 2:
        event = await beats.get(timeout=WAIT)
        data = event.data
        if data["status"] != "stalled":
            continue
        if "blocked_by" in data:  # from the watchdog's thread, while the loop was stuck
            assert event.ts < blocker.ended_ns or not blocker.ended_ns
            during[event.source] = data
        elif "stalled_ms" in data:  # from the loop, once it turned again
            after[event.source] = data

    assert set(during) == {"blocker", "bystander"}  # the whole process stood still
    assert during["blocker"]["blocked_by"] == "blocker/block"
    assert during["bystander"]["blocked_ms"] > STALL_AFTER * 1000
    assert after["blocker"]["stalled_ms"] > STALL_AFTER * 1000
    assert after["bystander"]["stalls"] == 1
    stats = rt.agents["blocker"].statistics()
    assert stats.stalls == 1 and stats.longest_stall_ms > STALL_AFTER * 1000


async def test_a_loop_that_keeps_turning_is_never_reported_stalled(rt: Runtime):
    await rt.start(Bystander("bystander"))
    beats = await rt.subscribe("loom.agent.bystander.heartbeat")
    seen = [(await beats.get(timeout=WAIT)).data for _ in range(10)]  # a second of beats
    assert {data["status"] for data in seen} <= {"running", "idle"}
    assert rt.agents["bystander"].statistics().stalls == 0
