"""Fixtures of the failover and chaos tests: agents' processes that can be killed."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loom_kernel import Runtime
from tests.conftest import PYTHON, python_env, wait_until
from tests.kernel.conftest import CHILD, STARTUP, WAIT


class Children:
    """Child processes running ``child_agents.py`` in the project; killed at the end."""

    def __init__(self, project: Path):
        self.project = project
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, *names: str) -> asyncio.subprocess.Process:
        log = self.project / f"child-{len(self.procs)}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                PYTHON, str(CHILD), *names, cwd=self.project, env=python_env(),
                stdout=out, stderr=out, start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)
        return proc

    async def kill(self, proc: asyncio.subprocess.Process) -> None:
        proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(proc.wait(), WAIT)

    async def aclose(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                await asyncio.wait_for(proc.wait(), WAIT)


@pytest.fixture
async def children(project: Path) -> AsyncIterator[Children]:
    kids = Children(project)
    yield kids
    await kids.aclose()


def record(project: Path) -> dict:
    """The project's discovery record, ``.loom/bus.json``."""
    return json.loads((project / ".loom" / "bus.json").read_text())


async def wait_for_host(project: Path, pid: int) -> dict:
    """The discovery record once process ``pid`` hosts the bus."""

    def hosted() -> bool:
        try:
            return record(project)["pid"] == pid
        except (OSError, ValueError):
            return False

    await wait_until(hosted, STARTUP)
    return record(project)


async def wait_for_agent(rt: Runtime, agent: str) -> None:
    """Return once ``agent`` has published a heartbeat (bounded)."""
    beats = await rt.subscribe(f"loom.agent.{agent}.heartbeat")
    try:
        await beats.get(timeout=STARTUP)
    finally:
        await beats.aclose()
