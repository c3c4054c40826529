"""`loom bus` as a real process: agents of the project join it by discovery."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from pathlib import Path

import pytest

from loom_kernel import Agent, BusError, on_event, open_runtime
from tests.conftest import PYTHON, free_port, python_env

pytestmark = pytest.mark.multiprocess


def start_bus(project: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, "-m", "loom_kernel.cli.app", "bus", "--stats-interval", "0.2", *extra],
        cwd=project,
        env=python_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def wait_for_file(path: Path, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not path.exists():  # noqa: ASYNC240 - a stat, polled with a bound
        if loop.time() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        await asyncio.sleep(0.02)


class Collector(Agent):
    def __init__(self, agent_id: str):
        super().__init__(agent_id)
        self.got: asyncio.Queue[str] = asyncio.Queue()

    @on_event("demo.*")
    async def collect(self, event, ctx):
        self.got.put_nowait(event.topic)


async def test_runtimes_join_a_standalone_bus_by_discovery(project: Path) -> None:
    port = free_port()
    proc = start_bus(project, "--url", f"tcp://127.0.0.1:{port}")
    try:
        await wait_for_file(project / ".loom" / "bus.json")
        record = json.loads((project / ".loom" / "bus.json").read_text())
        assert record["publish"] == f"tcp://127.0.0.1:{port}"
        assert record["kind"] == "standalone"
        async with open_runtime() as first, open_runtime() as second:
            assert not first.embedded and not second.embedded
            collector = Collector("collector")
            await first.start(collector)
            await second.emit("demo.hello", {"n": 1})
            assert await asyncio.wait_for(collector.got.get(), 5) == "demo.hello"
            stats = await second.subscribe("loom.broker.stats")
            assert (await stats.get(timeout=5)).data["frames_in"] > 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "loom bus stopped" in err
    assert not (project / ".loom" / "bus.json").exists()


async def test_second_bus_in_the_same_project_is_refused(project: Path) -> None:
    proc = start_bus(project, "--url", f"tcp://127.0.0.1:{free_port()}")
    try:
        await wait_for_file(project / ".loom" / "bus.json")
        second = await asyncio.to_thread(
            subprocess.run,
            [PYTHON, "-m", "loom_kernel.cli.app", "bus", "--url", f"tcp://127.0.0.1:{free_port()}"],
            cwd=project,
            env=python_env(),
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert second.returncode == 1
        assert "a bus already runs" in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def test_bad_bus_url_is_a_clear_error(project: Path) -> None:
    result = subprocess.run(
        [PYTHON, "-m", "loom_kernel.cli.app", "bus", "--url", "udp://nowhere"],
        cwd=project,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "unknown transport 'udp'" in result.stderr


async def test_connect_mode_without_a_bus_says_how_to_start_one(project: Path) -> None:
    (project / "loom.toml").write_text('[bus]\nmode = "connect"\n')
    with pytest.raises(BusError, match="loom bus"):
        await open_runtime()
