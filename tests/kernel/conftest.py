"""Fixtures of the kernel tests: child processes running agents on the test's bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from loom_kernel import Runtime, Subscription
from tests.conftest import PYTHON, python_env

CHILD = Path(__file__).parent / "_procs" / "child_agents.py"
WAIT = 5.0  # seconds: the bound of every wait for something that should happen promptly
STARTUP = 30.0  # seconds: a child imports the kernel and joins the bus within this


class Child:
    """A running child process and where its output goes."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path, agents: list[str]):
        self.proc = proc
        self.log = log
        self.agents = agents

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


async def next_event(sub: Subscription, timeout: float = WAIT, child: Child | None = None):
    try:
        return await sub.get(timeout)
    except TimeoutError:
        detail = f"\nchild output:\n{child.output()}" if child else ""
        raise AssertionError(
            f"nothing on {sub.pattern.text!r} within {timeout:g} s{detail}"
        ) from None


@pytest.fixture
async def spawn(rt: Runtime, project: Path) -> AsyncIterator[Callable[..., Awaitable[Child]]]:
    """Start ``child_agents.py NAME...`` in the project folder; ready once each agent beats."""
    children: list[Child] = []

    async def start(*names: str) -> Child:
        ids = {f"child-{name}" for name in names}
        beats = await rt.subscribe("loom.agent.*.heartbeat")
        log = project / f"child-{len(children)}.log"
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                PYTHON,
                str(CHILD),
                *names,
                cwd=project,
                env=python_env(),
                stdout=out,
                stderr=out,
                start_new_session=True,  # its own process group: we can check nothing is left
            )
        child = Child(proc, log, sorted(ids))
        children.append(child)
        try:
            seen: set[str] = set()
            while not ids <= seen:
                seen.add((await next_event(beats, STARTUP, child)).source)
        finally:
            await beats.aclose()
        return child

    yield start
    for child in children:
        if child.proc.returncode is None:
            child.proc.kill()
            await asyncio.wait_for(child.proc.wait(), WAIT)
