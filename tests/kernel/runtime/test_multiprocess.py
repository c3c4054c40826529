"""Agents in two processes on one bus, on either backend: on ZeroMQ the child joins the
test's embedded bus by discovery; on NATS both connect to a real nats-server (issue 25:
agents, tools, collaboration and heartbeats work unchanged)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loom_kernel import Agent, Runtime, on_event
from loom_kernel.bus.nats.server import local_cluster
from loom_kernel.errors import ToolError
from tests.kernel.conftest import WAIT, next_event
from tests.support.nats import nats_toml

pytestmark = pytest.mark.multiprocess


@pytest.fixture(params=["zeromq", "nats"])
async def project(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Path]:
    """The project folder (the working directory), on an embedded ZeroMQ bus or a NATS one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LOOM_CONFIG", raising=False)
    if request.param == "zeromq":
        (tmp_path / "loom.toml").write_text("[runtime]\nheartbeat_interval = 0.2\n")
        yield tmp_path
        return
    async with local_cluster(1, tmp_path / "nats") as server:
        (tmp_path / "loom.toml").write_text(nats_toml(server.urls))
        yield tmp_path


class Doubler(Agent):
    @on_event("parent.double")
    async def double(self, event, ctx):
        await ctx.reply(event, event.data * 2)


class ParentQuoter(Agent):
    @on_event("quote.ask")
    async def quote(self, event, ctx):
        await ctx.reply(event, {"by": self.id, "pid": os.getpid()})


class Collector(Agent):
    @on_event("pipe.exclaimed")
    async def collect(self, event, ctx):
        await ctx.emit("pipe.done", {"text": event.data, "from": event.source})


async def test_requests_cross_processes_in_both_directions(rt: Runtime, spawn):
    await rt.start(Doubler("parent-doubler"))
    child = await spawn("echo", "relay")

    echoed = await rt.request("child.echo", "hi", timeout=WAIT)
    assert echoed.data == {"echo": "hi", "pid": child.pid}
    assert echoed.source == "child-echo"

    relayed = await rt.request("child.relay", 21, timeout=WAIT)  # parent -> child -> parent
    assert relayed.data == {"doubled": 42, "pid": child.pid}


async def test_wildcard_subscriptions_match_across_processes(rt: Runtime, spawn):
    seen = await rt.subscribe("child.seen.market.*")
    await spawn("watcher")
    for topic in (
        "market.price.BTC",
        "market.prices.X",  # a sibling prefix: not matched
        "market.price",  # the pattern's own stem: not matched
        "market.price.BTC.spot",
        "market.price.BTCUSD",
        "market.price.ETH",
    ):
        await rt.emit(topic, topic)
    topics = []
    while not topics or topics[-1] != "market.price.ETH":
        topics.append((await next_event(seen)).data)
    assert topics == [
        "market.price.BTC",
        "market.price.BTC.spot",
        "market.price.BTCUSD",
        "market.price.ETH",
    ]


async def test_fan_out_gathers_replies_from_both_processes(rt: Runtime, spawn):
    await rt.start(ParentQuoter("parent-quoter"), Doubler("parent-doubler"))
    child = await spawn("quoter-a", "quoter-b", "echo")

    broadcast = await rt.context.fan_out("quote.ask", None, first=3, timeout=WAIT)
    assert broadcast.complete
    assert sorted((d["by"], d["pid"]) for d in broadcast.data) == sorted(
        [
            ("child-quoter-a", child.pid),
            ("child-quoter-b", child.pid),
            ("parent-quoter", os.getpid()),
        ]
    )

    listed = await rt.context.fan_out(
        [("child.echo", "x"), ("parent.double", 4), ("child.missing", 0)], timeout=0.5
    )
    assert not listed.complete
    assert listed.missing == ["child.missing"]
    assert {e.source: e.data for e in listed.events} == {
        "child-echo": {"echo": "x", "pid": child.pid},
        "parent-doubler": 8,
    }


async def test_three_agents_in_two_processes_share_one_workflow(rt: Runtime, spawn):
    done = await rt.subscribe("pipe.done")
    await rt.start(Collector("parent-collector"))
    await spawn("upper", "exclaim")

    raw = await rt.emit("pipe.raw", "hello")
    event = await next_event(done)
    assert event.data == {"text": "HELLO!", "from": "child-exclaim"}
    assert event.source == "parent-collector"
    assert event.thread_id == raw.id  # one thread across both processes
    assert event.hops == 3


async def test_child_stops_cleanly_on_sigterm_and_leaves_no_process(
    rt: Runtime, spawn, project: Path
):
    await rt.start(Doubler("parent-doubler"))
    stopped = await rt.subscribe("child.stopped")
    beats = await rt.subscribe("loom.agent.child-echo.heartbeat")
    child = await spawn("echo", "relay")
    assert (await rt.request("child.echo", 1, timeout=WAIT)).data["pid"] == child.pid

    child.proc.send_signal(signal.SIGTERM)
    returncode = await asyncio.wait_for(child.proc.wait(), WAIT)

    assert returncode == 0, child.output()
    assert "Traceback" not in child.output()
    with pytest.raises(ProcessLookupError):
        os.killpg(child.pid, 0)  # nothing left in the child's process group

    # It said goodbye on the way out: on_stop ran for both agents, a last "stopped" beat.
    farewells = {(await next_event(stopped, child=child)).data["agent"] for _ in range(2)}
    assert farewells == {"child-echo", "child-relay"}
    while (await next_event(beats, child=child)).data["status"] != "stopped":
        pass

    # The parent's bus outlives the child, and the child left its record alone.
    if rt.embedded:  # a ZeroMQ bus this process hosts: its discovery record
        assert json.loads((project / ".loom" / "bus.json").read_text())["pid"] == os.getpid()
    assert (await rt.request("parent.double", 5, timeout=WAIT)).data == 10


async def test_tools_are_called_and_listed_across_processes(rt: Runtime, spawn):
    await spawn("calculator")
    assert await rt.tool("add", {"a": 2, "b": 40}) == 42
    with pytest.raises(ToolError, match="argument 'a'"):
        await rt.tool("add", {"a": "two"})
    listed = {info.name: info for info in await rt.tools(timeout=0.5)}
    add = listed["add"]
    assert add.provider == "agent:child-calculator"
    assert add.process != rt.client.client_id
    assert add.input_schema["required"] == ["a"]
    assert add.description == "Add two integers in another process."
