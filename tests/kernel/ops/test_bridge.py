"""``loom bridge``: a ZeroMQ bus and a real nats-server joined for chosen topics (issue 25,
part 4): both ways, replies back across, trace context kept, no loops."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loom_kernel import Agent, LoomError, on_event, open_runtime
from loom_kernel.bus.nats.server import LocalCluster
from loom_kernel.ops.bridge import VIA_HEADER, Bridge
from loom_kernel.runtime import Runtime
from tests.conftest import PYTHON, python_env, wait_until
from tests.support.nats import nats_server, nats_toml

__all__ = ["nats_server"]
pytestmark = pytest.mark.timeout(60)
WAIT = 5.0


@dataclass
class Buses:
    zeromq: Runtime  # the laptop's bus (embedded)
    nats: Runtime  # a process on the NATS cluster


@pytest.fixture
async def buses(nats_server: LocalCluster, tmp_path: Path) -> AsyncIterator[Buses]:
    laptop, cluster = tmp_path / "laptop", tmp_path / "cluster"
    laptop.mkdir()
    cluster.mkdir()
    (laptop / "loom.toml").write_text("[runtime]\nheartbeat_interval = 0.2\n")
    (cluster / "loom.toml").write_text(nats_toml(nats_server.urls))
    async with open_runtime(laptop / "loom.toml") as z, open_runtime(cluster / "loom.toml") as n:
        yield Buses(z, n)


class Greeter(Agent):
    @on_event("greet.*")
    async def greet(self, event, ctx):
        await ctx.reply(event, f"hello, {event.data}")


async def test_events_cross_both_ways_as_they_were_published(buses: Buses) -> None:
    async with Bridge(buses.zeromq.client, buses.nats.client, out=["orders.*"], into=["signals.*"]):
        on_nats = await buses.nats.subscribe("orders.*")
        on_laptop = await buses.zeromq.subscribe("signals.*")
        sent = await buses.zeromq.emit("orders.new", {"qty": 3})
        got = await on_nats.get(WAIT)
        assert (got.id, got.source, got.seq, got.data) == (
            sent.id,
            sent.source,
            sent.seq,
            {"qty": 3},
        )
        assert got.traceparent == sent.traceparent and got.traceparent
        back = await buses.nats.emit("signals.buy", "AAPL")
        arrived = await on_laptop.get(WAIT)
        assert (arrived.id, arrived.data) == (back.id, "AAPL")
        assert arrived.headers[VIA_HEADER].startswith("bridge-")


async def test_a_request_crosses_and_its_reply_comes_back(buses: Buses) -> None:
    await buses.nats.start(Greeter("greeter"))
    async with Bridge(buses.zeromq.client, buses.nats.client, out=["greet.*"], into=[]) as bridge:
        answer = await buses.zeromq.request("greet.x", "Ada", timeout=WAIT)
        assert answer.data == "hello, Ada"
        assert bridge.statistics().replies == 1


async def test_a_topic_bridged_both_ways_does_not_loop(buses: Buses) -> None:
    async with Bridge(
        buses.zeromq.client, buses.nats.client, out=["echo.*"], into=["echo.*"]
    ) as bridge:
        laptop = await buses.zeromq.subscribe("echo.*")
        cluster = await buses.nats.subscribe("echo.*")
        await buses.zeromq.emit("echo.once", 1)
        assert (await laptop.get(WAIT)).data == 1
        assert (await cluster.get(WAIT)).data == 1
        await wait_until(lambda: bridge.statistics().loops >= 1, timeout=WAIT)
        with pytest.raises(TimeoutError):  # it never comes round again
            await laptop.get(0.5)
        with pytest.raises(TimeoutError):
            await cluster.get(0.1)
        assert (bridge.statistics().a_to_b, bridge.statistics().b_to_a) == (1, 0)


async def test_a_bridge_without_patterns_is_refused(buses: Buses) -> None:
    with pytest.raises(LoomError, match="--out"):
        Bridge(buses.zeromq.client, buses.nats.client, out=[], into=[])


async def test_loom_bridge_runs_until_ctrl_c(buses: Buses, nats_server: LocalCluster) -> None:
    laptop = buses.zeromq.config.project_dir
    on_nats = await buses.nats.subscribe("orders.*")
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "loom_kernel.cli.app", "bridge", "--nats", nats_server.urls[0],
        "--out", "orders.*", "--stats-interval", "0.2",
        cwd=laptop, env=python_env(), stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert "loom bridge" in line and nats_server.urls[0] in line, line
        await buses.zeromq.emit("orders.new", "via the command")
        assert (await on_nats.get(WAIT)).data == "via the command"
        proc.send_signal(signal.SIGINT)
        rest = (await asyncio.wait_for(proc.stderr.read(), 30)).decode()
        assert await proc.wait() == 0, rest
        assert "to NATS 1" in rest and "loom bridge stopped" in rest
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def test_loom_bridge_from_a_nats_project_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "loom.toml").write_text(nats_toml(["nats://127.0.0.1:4222"]))
    done = subprocess.run(
        [PYTHON, "-m", "loom_kernel.cli.app", "bridge", "--nats", "nats://x:4222", "--out", "a.*"],
        cwd=tmp_path, env=python_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    assert "joins a ZeroMQ bus to NATS" in done.stderr
