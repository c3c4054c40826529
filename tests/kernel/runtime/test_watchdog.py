"""The loop watchdog: a handler that blocks the event loop is reported ``stalled``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import pytest

from loom_kernel import Agent, Runtime, on_event, open_runtime
from tests.conftest import PYTHON, python_env
from tests.kernel.conftest import WAIT

pytestmark = pytest.mark.timeout(90)

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
    # the loop's own beats (delivered in process) may overtake the thread's, which went
    # through the broker: wait for both kinds
    while len(after) < 2 or len(during) < 2:
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


BLOCK_4S = 4.0  # seconds, as in the probe


class Sleeper(Agent):
    """Blocks the loop with a blocking call for at least ``BLOCK_4S`` seconds and until
    ``until`` (a process) has exited."""

    def __init__(self) -> None:
        super().__init__("sleeper")
        self.until: subprocess.Popen[bytes] | None = None

    @on_event("sleep.now")
    async def sleep(self, event, ctx) -> None:
        block(self.until)  # the mistake: a blocking call on the event loop


def block(until: subprocess.Popen[bytes] | None) -> None:
    started = time.monotonic()
    while time.monotonic() - started < BLOCK_4S or (until is not None and until.poll() is None):
        if time.monotonic() - started > 60:  # bounded: the status process hung
            break
        time.sleep(0.05)


def loom_status(project: Path, out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as stdout:
        return subprocess.Popen(
            [PYTHON, "-m", "loom_kernel.cli.app", "status", "--json", "--wait", "2"],
            cwd=project, env=python_env(), stdout=stdout, stderr=subprocess.DEVNULL,
        )  # fmt: skip


async def test_loom_status_reports_an_agent_stalled_while_its_loop_is_blocked_4_s(
    rt: Runtime, project: Path
):
    sleeper = Sleeper()
    await rt.start(sleeper)
    beats = await rt.subscribe("loom.agent.sleeper.heartbeat")
    await beats.get(timeout=WAIT)  # it is on the bus: `loom status` will hear of it
    out = project / "status.json"
    sleeper.until = loom_status(project, out)
    await rt.emit("sleep.now")
    await asyncio.to_thread(sleeper.until.wait, 60)  # the loop was blocked all along
    (row,) = [row for row in json.loads(out.read_text()) if row["agent"] == "sleeper"]
    assert row["status"] == "stalled"
    assert row["blocked_by"] == "sleeper/sleep"
    after = await beats.get(timeout=WAIT)
    while "stalled_ms" not in after.data:  # the beats sent while it stood still come first
        after = await beats.get(timeout=WAIT)
    assert after.data["stalled_ms"] >= BLOCK_4S * 1000
