"""Failover with real processes: the bus outlives the process that hosts it.

The host is killed with SIGKILL (no goodbye, its ``bus.json`` left behind); the survivors
must elect a new host at the same address on their own, requests must work again, a
process started afterwards must join that bus and not start a second one, and what was
lost must show in the gap counters.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from loom_kernel import BusError, Envelope, Runtime, open_runtime
from loom_kernel.errors import LoomTimeoutError
from loom_kernel.security import generate_keys
from tests.conftest import PYTHON, free_port, python_env, wait_until
from tests.kernel.bus.zeromq.conftest import Children, record, wait_for_agent, wait_for_host
from tests.kernel.conftest import STARTUP, WAIT

pytestmark = pytest.mark.multiprocess

# The failover time is measured by benchmarks/failover.py (target < 3 s), never asserted
# here: this test checks that the project recovers, and prints the time it took.
TARGET = 3.0


async def failed_over(rt: Runtime, times: int = 1) -> None:
    """Wait (bounded) until the runtime's client has seen the bus come back ``times``."""
    await wait_until(lambda: rt.client.statistics().bus["failovers"] >= times, STARTUP)


async def answered(rt: Runtime, topic: str, data: object, bound: float = STARTUP) -> Envelope:
    """Ask until answered (a failover in progress fails requests fast); bounded."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    while True:
        try:
            return await rt.request(topic, data, timeout=0.5)
        except (BusError, LoomTimeoutError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


async def test_killing_the_host_fails_the_bus_over_at_the_same_address(
    project: Path, children: Children
) -> None:
    host = await children.start("upper")
    before = await wait_for_host(project, host.pid)
    async with open_runtime(project / "loom.toml") as rt:
        assert not rt.embedded
        survivor = await children.start("echo")
        await wait_for_agent(rt, "child-echo")
        assert (await rt.request("child.echo", 1, timeout=WAIT)).data["pid"] == survivor.pid

        loop = asyncio.get_running_loop()
        killed = loop.time()
        await children.kill(host)
        # in flight while the bus fails over: a clear error, not a wait for the timeout
        with pytest.raises(BusError, match="failing over"):
            await rt.request("nobody.answers", timeout=STARTUP)
        reply = await answered(rt, "child.echo", 2)
        failover = loop.time() - killed
        assert reply.data == {"echo": 2, "pid": survivor.pid}
        print(f"failover: answered again {failover:.2f} s after the kill (target {TARGET:g} s)")

        after = record(project)
        assert after["publish"] == before["publish"]
        assert after["subscribe"] == before["subscribe"]
        assert after["pid"] in (os.getpid(), survivor.pid)
        assert rt.embedded == (after["pid"] == os.getpid())
        bus = rt.client.statistics().bus
        assert bus["state"] == "up" and bus["lost"] == 1 and bus["failovers"] == 1

        # a process started now joins that bus: no second one
        await children.start("calculator")
        await wait_for_agent(rt, "child-calculator")
        assert await rt.tool("add", {"a": 40, "b": 2}) == 42
        assert record(project) == after


async def test_the_test_process_takes_over_when_it_is_the_only_survivor(
    project: Path, children: Children
) -> None:
    host = await children.start("echo")
    before = await wait_for_host(project, host.pid)
    async with open_runtime(project / "loom.toml") as rt:
        await wait_for_agent(rt, "child-echo")
        await children.kill(host)
        await failed_over(rt)
        assert rt.embedded
        assert record(project) == {
            **before,
            "pid": os.getpid(),
            "started": record(project)["started"],
        }
        spans = rt.span_store  # the new host stores the spans
        await rt.emit("after.takeover", 1)  # its publish span goes to the store
        await wait_until(lambda: spans.count() > 0, STARTUP)
    assert not (project / ".loom" / "bus.json").exists()


async def test_events_lost_in_a_failover_are_counted_as_gaps(
    project: Path, children: Children
) -> None:
    host = await children.start("upper")
    await wait_for_host(project, host.pid)
    async with open_runtime(project / "loom.toml") as rt:
        ticks = await rt.subscribe("tick.n")
        await children.start("ticker")
        first = (await ticks.get(timeout=STARTUP)).data
        await children.kill(host)
        await failed_over(rt)
        received = 1
        last = first
        # read on until well after the failover: every tick is either received or counted
        while last < first + 2000:
            last = (await ticks.get(timeout=WAIT)).data
            received += 1
        lost = ticks.statistics().lost
    assert received + lost == last - first + 1
    assert rt.client.statistics().lost == lost


async def test_a_restarted_loom_bus_is_rejoined(project: Path) -> None:
    (project / "loom.toml").write_text(
        "[runtime]\nheartbeat_interval = 0.2\n[bus]\ntakeover = false\n"
    )
    url = f"tcp://127.0.0.1:{free_port()}"

    def loom_bus() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [PYTHON, "-m", "loom_kernel.cli.app", "bus", "--url", url, "--quiet"],
            cwd=project, env=python_env(),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    bus = loom_bus()
    try:
        await wait_for_host(project, bus.pid)
        async with open_runtime(project / "loom.toml") as rt:
            sub = await rt.subscribe("after.restart")
            bus.kill()
            await asyncio.to_thread(bus.wait, WAIT)
            await wait_until(lambda: rt.client.bus_lost, STARTUP)
            assert not rt.embedded  # takeover = false: it waits for `loom bus`
            bus = loom_bus()
            await rt.wait_bus(STARTUP)
            await rt.emit("after.restart", 1)
            assert (await sub.get(timeout=WAIT)).data == 1
            assert rt.client.statistics().bus["failovers"] == 1
            assert record(project)["pid"] == bus.pid
    finally:
        bus.send_signal(signal.SIGTERM)
        await asyncio.to_thread(bus.wait, 20)


async def test_a_curve_bus_fails_over_with_its_guard(project: Path, children: Children) -> None:
    """On a CURVE bus the new host's broker is a guarded one too: the survivors resubscribe
    through its guard while it settles, and requests and tools work again."""
    toml = project / "loom.toml"
    toml.write_text(toml.read_text() + '[bus]\nsecurity = "curve"\n')
    for name in ("broker", "loom"):
        generate_keys(project / ".loom" / "keys", name)
    host = await children.start("upper")
    await wait_for_host(project, host.pid)
    async with open_runtime(toml) as rt:
        survivor = await children.start("echo")
        await wait_for_agent(rt, "child-echo")
        await children.kill(host)
        reply = await answered(rt, "child.echo", 3)
        assert reply.data == {"echo": 3, "pid": survivor.pid}
        assert rt.client.statistics().bus["failovers"] == 1
        if rt.broker is not None:  # this process hosts the bus now (or the survivor does)
            assert rt.broker.guard is not None
