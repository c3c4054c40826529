"""`loom log` as a real process: it records the project's bus into the event log."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import pytest

from loom_kernel import open_runtime
from loom_kernel.durability import EventLog
from tests.conftest import PYTHON, free_port, python_env

pytestmark = pytest.mark.multiprocess


async def test_loom_log_records_a_bus_whose_process_does_not(project: Path) -> None:
    (project / "loom.toml").write_text(
        '[eventlog]\nenabled = true\nembedded = false\nreliable = ["orders.*"]\n'
    )
    async with open_runtime(project / "loom.toml") as rt:
        assert await rt.start_event_log() is None
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "loom_kernel.cli.app", "log", "--stats-interval", "0.2",
            cwd=project, env=python_env(), stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            for i in range(100):
                await rt.emit("orders.new", {"i": i})
            # acknowledged: `loom log` has them (sent again if it started after them)
            await rt.wait_acknowledged(30.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert "loom log stopped" in err.decode()
    log = EventLog(project / ".loom" / "events.db")
    assert sorted(item.event.data["i"] for item in log.query(topics=["orders.*"])) == list(
        range(100)
    )
    log.close()


def test_loom_log_without_a_bus_says_how_to_start_one(project: Path) -> None:
    done = subprocess.run(
        [PYTHON, "-m", "loom_kernel.cli.app", "log"],
        cwd=project, env=python_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "no bus runs for this project" in done.stderr


async def test_loom_bus_records_the_event_log_itself(project: Path) -> None:
    (project / "loom.toml").write_text('[eventlog]\nenabled = true\nreliable = ["orders.*"]\n')
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "loom_kernel.cli.app", "bus", "--url", f"tcp://127.0.0.1:{free_port()}",
        cwd=project, env=python_env(), stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        while b"recording events in" not in (line := await asyncio.wait_for(
            proc.stderr.readline(), 30
        )):  # fmt: skip
            assert line, "loom bus ended before recording"
        async with open_runtime(project / "loom.toml") as rt:
            assert not rt.embedded
            for i in range(20):
                await rt.emit("orders.new", {"i": i})
            await rt.wait_acknowledged(30.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.communicate(), 30)
    log = EventLog(project / ".loom" / "events.db")
    assert [item.event.data["i"] for item in log.query(topics=["orders.*"])] == list(range(20))
    log.close()
