"""The runtime: agent lifecycle, supervision, heartbeats, and finding or embedding the bus."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from loom_kernel import (
    Agent,
    BusError,
    Envelope,
    LoomError,
    RemoteError,
    Runtime,
    Subscription,
    on_event,
    open_runtime,
    tool,
)
from loom_kernel.agents.runner import AgentStatistics
from loom_kernel.runtime import RuntimeStatistics
from tests.conftest import PYTHON, WAIT, free_port, wait_until


async def next_event(
    sub: Subscription, predicate: Callable[[Envelope], bool] = lambda e: True, timeout: float = WAIT
) -> Envelope:
    """The next event on ``sub`` satisfying ``predicate``; fails the test after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            event = await sub.get(max(deadline - loop.time(), 0))
        except TimeoutError:
            raise AssertionError(
                f"no matching event on {sub.pattern.text!r} within {timeout:g} s"
            ) from None
        if predicate(event):
            return event


def write_config(folder: Path, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "loom.toml"
    path.write_text(text)
    return path


def owners(rt: Runtime) -> set[str]:
    return {sub["owner"] for sub in rt.client.statistics().subscriptions}


def status_is(status: str) -> Callable[[Envelope], bool]:
    return lambda event: event.data["status"] == status


# -- lifecycle -----------------------------------------------------------------------


class Lifecycle(Agent):
    def __init__(self, agent_id: str = "life"):
        super().__init__(agent_id)
        self.run_started = asyncio.Event()
        self.run_cancelled = False
        self.run_alive_during_on_stop: bool | None = None

    @on_event("life.echo")
    async def echo(self, event, ctx):
        await ctx.emit("life.seen", event.data)

    async def on_start(self, ctx):
        # Only arrives if the agent's own subscription is already live.
        await ctx.emit("life.echo", "from on_start")

    async def run(self, ctx):
        self.run_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.run_cancelled = True
            raise

    async def on_stop(self, ctx):
        self.run_alive_during_on_stop = not self.run_cancelled
        await ctx.emit("life.stopping", "bye")


async def test_on_start_runs_after_the_agents_subscriptions_are_live(rt: Runtime):
    seen = await rt.subscribe("life.seen")
    await rt.start(Lifecycle())
    event = await next_event(seen)
    assert (event.data, event.source) == ("from on_start", "life")


async def test_stop_runs_on_stop_then_cancels_run_and_closes_subscriptions(rt: Runtime):
    agent = Lifecycle()
    stopping = await rt.subscribe("life.stopping")
    await rt.start(agent)
    await asyncio.wait_for(agent.run_started.wait(), WAIT)
    assert rt.status("life") == "running"
    assert "life" in owners(rt)

    await rt.stop("life")

    assert agent.run_alive_during_on_stop is True
    assert agent.run_cancelled is True
    assert rt.status("life") == "stopped"
    assert "life" not in owners(rt)
    assert (await next_event(stopping)).data == "bye"


async def test_stop_accepts_the_agent_instance_and_refuses_an_unknown_id(rt: Runtime):
    agent = Lifecycle()
    await rt.start(agent)
    await rt.stop(agent)
    assert rt.status("life") == "stopped"
    with pytest.raises(LoomError, match=r"no agent 'ghost' in this runtime \(running: life\)"):
        await rt.stop("ghost")


async def test_aclose_stops_every_agent(project: Path):
    agent = Lifecycle()
    async with open_runtime(project / "loom.toml") as rt:
        await rt.start(agent)
        await asyncio.wait_for(agent.run_started.wait(), WAIT)
    assert agent.run_cancelled
    assert agent.run_alive_during_on_stop is True
    assert rt.status("life") == "stopped"


async def test_start_refuses_what_is_not_an_agent(rt: Runtime):
    with pytest.raises(TypeError, match="Agent instances"):
        await rt.start(Lifecycle)  # the class, not an instance


# -- supervision ---------------------------------------------------------------------


class Fragile(Agent):
    @on_event("fragile.in")
    async def handle(self, event, ctx):
        if event.data == "boom":
            raise RuntimeError("boom on purpose")
        await ctx.emit("fragile.out", event.data)


async def test_a_raising_handler_does_not_stop_its_agent(rt: Runtime):
    out = await rt.subscribe("fragile.out")
    await rt.start(Fragile("fragile"))

    await rt.emit("fragile.in", "boom")
    await rt.emit("fragile.in", "ok")
    await rt.emit("fragile.in", "boom")
    await rt.emit("fragile.in", "still ok")

    assert (await next_event(out)).data == "ok"
    assert (await next_event(out)).data == "still ok"
    await wait_until(lambda: rt.agents["fragile"].handled == 4)
    stats = rt.agents["fragile"].statistics()
    assert (stats.errors, stats.status) == (2, "running")
    assert stats.last_error == "RuntimeError: boom on purpose"


async def test_a_handler_error_is_reported_with_its_traceback(rt: Runtime):
    errors = await rt.subscribe("loom.agent.fragile.error")
    logs = await rt.subscribe("loom.log.fragile")
    await rt.start(Fragile("fragile"))

    sent = await rt.emit("fragile.in", "boom")

    report = await next_event(errors)
    assert (report.type, report.source) == ("error", "fragile")
    data = report.data
    assert data["agent"] == "fragile"
    assert data["where"] == "handle"
    assert data["topic"] == "fragile.in"
    assert data["event_id"] == sent.id
    assert (data["error"], data["message"]) == ("RuntimeError", "boom on purpose")
    assert data["traceback"].startswith("Traceback (most recent call last)")
    assert "in handle" in data["traceback"]
    assert data["traceback"].rstrip().endswith("RuntimeError: boom on purpose")

    record = await next_event(logs)
    assert record.type == "log"
    assert record.data["level"] == "ERROR"
    assert "handle failed on 'fragile.in'" in record.data["message"]
    assert "RuntimeError: boom on purpose" in record.data["message"]


async def test_ctx_log_info_is_published_and_debug_is_not(rt: Runtime):
    class Chatty(Agent):
        @on_event("chatty.go")
        async def go(self, event, ctx):
            ctx.log.debug("not on the bus")
            ctx.log.info("price %s seen", event.data)

    logs = await rt.subscribe("loom.log.chatty")
    await rt.start(Chatty("chatty"))
    await rt.emit("chatty.go", 42)
    record = await next_event(logs)
    assert record.data == {"level": "INFO", "message": "price 42 seen"}
    assert logs.statistics().depth == 0


class BrokenStart(Agent):
    @on_event("broken.in")
    async def handle(self, event, ctx):
        pass

    async def on_start(self, ctx):
        raise ValueError("no config for broken")


async def test_on_start_raising_fails_the_agent_with_loom_error(rt: Runtime):
    errors = await rt.subscribe("loom.agent.broken.error")
    with pytest.raises(LoomError, match="agent 'broken' failed to start: ValueError") as info:
        await rt.start(BrokenStart("broken"))
    assert isinstance(info.value.__cause__, ValueError)
    assert rt.status("broken") == "failed"
    assert "broken" not in owners(rt)
    report = await next_event(errors)
    assert (report.data["where"], report.data["message"]) == ("on_start", "no config for broken")


async def test_a_failed_agents_id_can_be_started_again(rt: Runtime):
    with pytest.raises(LoomError):
        await rt.start(BrokenStart("again"))
    out = await rt.subscribe("fragile.out")
    await rt.start(Fragile("again"))
    assert rt.status("again") != "failed"
    await rt.emit("fragile.in", "works")
    assert (await next_event(out)).source == "again"


async def test_a_duplicate_agent_id_is_refused(rt: Runtime):
    await rt.start(Fragile("twin"))
    with pytest.raises(LoomError, match="'twin' is already running"):
        await rt.start(Lifecycle("twin"))
    assert isinstance(rt.agents["twin"].agent, Fragile)

    await rt.stop("twin")
    await rt.start(Lifecycle("twin"))  # a stopped id is free again
    assert rt.status("twin") == "running"


class Grumpy(Agent):
    @on_event("grumpy.ask")
    async def ask(self, event, ctx):
        raise KeyError("missing-key")


async def test_a_failing_request_handler_answers_with_an_error(rt: Runtime):
    await rt.start(Grumpy("grumpy"))
    started = time.monotonic()
    with pytest.raises(RemoteError) as info:
        await rt.request("grumpy.ask", {"q": 1}, timeout=WAIT)
    assert time.monotonic() - started < WAIT / 2  # the error reply, not the timeout
    error = info.value
    assert (error.topic, error.source, error.error_type) == ("grumpy.ask", "grumpy", "KeyError")
    assert "missing-key" in error.remote_message
    assert "grumpy failed handling 'grumpy.ask': KeyError" in str(error)
    assert rt.status("grumpy") == "running"


# -- causal chains -------------------------------------------------------------------


class Ping(Agent):
    @on_event("pp.ping")
    async def ping(self, event, ctx):
        await ctx.emit("pp.pong", event.data + 1)


class Pong(Agent):
    @on_event("pp.pong")
    async def pong(self, event, ctx):
        await ctx.emit("pp.ping", event.data + 1)


async def test_max_hops_stops_two_agents_answering_each_other(project: Path):
    config = write_config(project, "[runtime]\nheartbeat_interval = 0.2\nmax_hops = 4\n")
    async with open_runtime(config) as rt:
        await rt.start(Ping("ping"), Pong("pong"))
        await rt.emit("pp.ping", 0)
        ping, pong = rt.agents["ping"], rt.agents["pong"]
        await wait_until(lambda: ping.errors + pong.errors >= 1)
        # hops 0, 2, 4 handled by ping, 1 and 3 by pong; ping's emit at hop 5 is refused.
        await wait_until(lambda: ping.handled == 3)
        assert (ping.handled, pong.handled) == (3, 2)
        assert (ping.errors, pong.errors) == (1, 0)
        assert ping.last_error is not None
        assert "hop 5" in ping.last_error
        assert "max_hops = 4" in ping.last_error
        assert rt.status("ping") == "running"


async def test_a_max_hops_violation_is_reported_on_the_error_topic(project: Path):
    config = write_config(project, "[runtime]\nheartbeat_interval = 0.2\nmax_hops = 4\n")
    async with open_runtime(config) as rt:
        errors = await rt.subscribe("loom.agent.*.error")
        await rt.start(Ping("ping"), Pong("pong"))
        await rt.emit("pp.ping", 0)
        await wait_until(lambda: rt.agents["ping"].errors == 1)
        report = await next_event(errors, timeout=2.0)
        assert (report.source, report.data["where"]) == ("ping", "ping")
        assert "max_hops" in report.data["message"]


class Relay(Agent):
    def __init__(self, agent_id: str, source: str, target: str):
        super().__init__(agent_id)
        self.source, self.target = source, target

    @on_event("chain.*")
    async def relay(self, event, ctx):
        if event.topic == self.source:
            await ctx.emit(self.target, event.data)


async def test_emitted_events_continue_the_handled_events_thread_and_count_hops(rt: Runtime):
    ends = await rt.subscribe("chain.*")
    await rt.start(
        Relay("first", "chain.start", "chain.middle"), Relay("second", "chain.middle", "chain.end")
    )
    start = await rt.emit("chain.start", "x")
    assert (start.hops, start.thread_id) == (0, None)

    chain = {}
    while len(chain) < 3:
        event = await next_event(ends)
        chain[event.topic] = event
    middle, end = chain["chain.middle"], chain["chain.end"]
    assert (middle.source, middle.hops, middle.thread_id) == ("first", 1, start.id)
    assert (end.source, end.hops, end.thread_id) == ("second", 2, start.id)


async def test_an_explicit_thread_id_is_kept_along_the_chain(rt: Runtime):
    ends = await rt.subscribe("chain.end")
    await rt.start(Relay("first", "chain.start", "chain.end"))
    await rt.emit("chain.start", "x", thread_id="workflow-7")
    end = await next_event(ends)
    assert (end.thread_id, end.hops) == ("workflow-7", 1)


async def test_a_reply_stays_in_the_requests_thread(rt: Runtime):
    class Echo(Agent):
        @on_event("echo.ask")
        async def ask(self, event, ctx):
            await ctx.reply(event, {"echo": event.data})

    await rt.start(Echo("echo"))
    reply = await rt.request("echo.ask", 3)
    assert reply.data == {"echo": 3}
    assert (reply.type, reply.source, reply.hops) == ("reply", "echo", 1)
    assert reply.thread_id is not None
    assert reply.correlation_id is not None


# -- heartbeats and status -----------------------------------------------------------

FAST_BEATS = "[runtime]\nheartbeat_interval = 0.05\nidle_after = 0.6\nstall_after = 0.4\n"


@pytest.fixture
async def fast_rt(project: Path):
    async with open_runtime(write_config(project, FAST_BEATS)) as runtime:
        yield runtime


class Quiet(Agent):
    @on_event("quiet.in")
    async def handle(self, event, ctx):
        pass


class Slow(Agent):
    def __init__(self, agent_id: str = "slow"):
        super().__init__(agent_id)
        self.entered = asyncio.Event()
        self.entered_ns = 0
        self.release = asyncio.Event()

    @on_event("slow.work")
    async def work(self, event, ctx):
        self.entered_ns = time.time_ns()
        self.entered.set()
        await self.release.wait()


class Ticker(Agent):
    async def run(self, ctx):
        while True:
            await ctx.emit("ticker.tick", time.time())
            await asyncio.sleep(0.05)


async def test_heartbeats_are_published_with_the_agents_statistics(fast_rt: Runtime):
    beats = await fast_rt.subscribe("loom.agent.quiet.heartbeat")
    await fast_rt.start(Quiet("quiet"))
    first = await next_event(beats)
    second = await next_event(beats)
    assert (first.type, first.source) == ("heartbeat", "quiet")
    code = {"patterns", "module", "class", "version"}  # what it runs: heartbeat.describe
    assert set(first.data) == {field.name for field in dataclasses.fields(AgentStatistics)} | code
    assert first.data["agent_id"] == "quiet"
    assert (first.data["module"], first.data["class"], first.data["version"]) == (
        __name__, "Quiet", 1,
    )  # fmt: skip
    assert second.data["uptime_s"] >= first.data["uptime_s"]


class Listener(Agent):
    @on_event("market.price.*")
    async def prices(self, event, ctx):
        pass

    @on_event("news.*.AAPL", qos="realtime")
    async def news(self, event, ctx):
        pass

    @tool("listener.ping")
    async def ping(self) -> str:
        return "pong"


async def test_a_heartbeat_names_the_patterns_the_agent_subscribes_to(fast_rt: Runtime):
    beats = await fast_rt.subscribe("loom.agent.listener.heartbeat")
    await fast_rt.start(Listener("listener"))
    first = await next_event(beats)
    assert sorted(first.data["patterns"]) == [
        "loom.tool.listener.ping", "market.price.*", "news.*.AAPL",
    ]  # fmt: skip


async def test_a_just_started_agent_is_running_not_idle(fast_rt: Runtime):
    beats = await fast_rt.subscribe("loom.agent.quiet.heartbeat")
    await fast_rt.start(Quiet("quiet"))
    first = await next_event(beats)
    # Nothing happened yet, but idle_after (0.6 s) has not passed since it started either.
    assert first.data["uptime_s"] < 0.6
    assert first.data["status"] == "running"


async def test_status_follows_a_handler_running_stalling_and_finishing(fast_rt: Runtime):
    agent = Slow()
    beats = await fast_rt.subscribe("loom.agent.slow.heartbeat")
    await fast_rt.start(agent)
    await next_event(beats, status_is("idle"))  # nothing to do for idle_after

    await fast_rt.emit("slow.work")
    await asyncio.wait_for(agent.entered.wait(), WAIT)
    busy = await next_event(beats, lambda e: e.ts > agent.entered_ns)
    assert busy.data["status"] == "running"  # handling, not yet past stall_after
    await next_event(beats, status_is("stalled"))  # blocked for longer than stall_after
    assert fast_rt.status("slow") == "stalled"

    agent.release.set()
    after = await next_event(beats, lambda e: e.data["handled"] == 1)
    assert after.data["status"] == "running"  # it just finished: active recently
    idle = await next_event(beats, status_is("idle"))
    assert idle.data["handled"] == 1


async def test_an_agent_that_keeps_emitting_stays_running_while_a_quiet_one_goes_idle(
    fast_rt: Runtime,
):
    beats = await fast_rt.subscribe("loom.agent.*.heartbeat")
    await fast_rt.start(Ticker("ticker"), Quiet("quiet"))
    late = {}
    while len(late) < 2:  # a beat of each, both past idle_after since they started
        beat = await next_event(beats, lambda e: e.data["uptime_s"] > 1.0)
        late[beat.source] = beat.data
    assert late["ticker"]["status"] == "running"
    assert late["ticker"]["emitted"] > 5
    assert late["quiet"]["status"] == "idle"


async def test_a_stopped_agent_sends_a_last_stopped_heartbeat_then_none(fast_rt: Runtime):
    beats = await fast_rt.subscribe("loom.agent.*.heartbeat")
    await fast_rt.start(Quiet("quiet"), Quiet("witness"))
    await next_event(beats, lambda e: e.source == "quiet")

    await fast_rt.stop("quiet")
    await next_event(beats, lambda e: e.source == "quiet" and e.data["status"] == "stopped")
    later = []
    while sum(1 for e in later if e.source == "witness") < 4:  # four more heartbeat rounds
        later.append(await next_event(beats))
    assert [e.source for e in later if e.source == "quiet"] == []


async def test_an_agent_whose_run_raised_is_failed(fast_rt: Runtime):
    class Feed(Agent):
        def __init__(self):
            super().__init__("feed")
            self.go = asyncio.Event()

        async def run(self, ctx):
            await self.go.wait()
            raise ConnectionError("feed lost")

    agent = Feed()
    beats = await fast_rt.subscribe("loom.agent.feed.heartbeat")
    errors = await fast_rt.subscribe("loom.agent.feed.error")
    await fast_rt.start(agent)
    await next_event(beats, lambda e: e.data["status"] != "failed")

    agent.go.set()
    failed = await next_event(beats, status_is("failed"))
    assert failed.data["errors"] == 1
    assert failed.data["last_error"] == "ConnectionError: feed lost"
    report = await next_event(errors)
    assert (report.data["where"], report.data["error"]) == ("run", "ConnectionError")

    await fast_rt.stop("feed")
    assert fast_rt.status("feed") == "failed"  # stopping does not hide that it failed


class CrashingFeed(Agent):
    """Its ``run()`` fails when told to; its handler keeps serving meanwhile."""

    def __init__(self, agent_id: str = "feed"):
        super().__init__(agent_id)
        self.crash = asyncio.Event()
        self.stopped = False

    @on_event("feed.ping")
    async def ping(self, event, ctx):
        await ctx.emit("feed.pong", id(self))

    async def run(self, ctx):
        await self.crash.wait()
        raise ConnectionError("feed lost")

    async def on_stop(self, ctx):
        self.stopped = True


async def test_starting_over_an_agent_whose_run_failed_replaces_it_entirely(rt: Runtime):
    old, new = CrashingFeed(), CrashingFeed()
    await rt.start(old)
    old.crash.set()
    await wait_until(lambda: rt.status("feed") == "failed")

    await rt.start(new)  # the id of a failed agent may be reused...

    # ...but the failed instance must not keep handling events beside its replacement.
    feed_subs = [s for s in rt.client.statistics().subscriptions if s["owner"] == "feed"]
    assert [s["pattern"] for s in feed_subs] == ["feed.ping"]
    assert old.stopped, "the failed instance was never stopped"
    pongs = await rt.subscribe("feed.pong")
    await rt.emit("feed.ping")
    assert (await next_event(pongs)).data == id(new)


# -- statistics ----------------------------------------------------------------------


async def test_statistics_snapshot_of_client_agents_and_broker(rt: Runtime):
    out = await rt.subscribe("fragile.out")
    await rt.start(Fragile("fragile"), Quiet("quiet"))
    await rt.emit("fragile.in", "a")
    await rt.emit("fragile.in", "boom")
    await next_event(out)
    await wait_until(lambda: rt.agents["fragile"].handled == 2)

    stats = rt.statistics()
    assert isinstance(stats, RuntimeStatistics)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.broker = None  # type: ignore[misc]
    assert [a.agent_id for a in stats.agents] == ["fragile", "quiet"]
    fragile = stats.agents[0]
    assert isinstance(fragile, AgentStatistics)
    assert (fragile.handled, fragile.errors, fragile.emitted) == (2, 1, 1)
    assert fragile.queue_depth == 0
    assert fragile.handler_p99_ms >= fragile.handler_p50_ms >= 0
    assert {"client_id", "published", "received", "delivered", "subscriptions"} <= set(stats.client)
    assert stats.client["published"] > 0
    assert stats.broker is not None
    assert set(stats.broker) == {"frames_in", "bytes_in", "frames_out", "bytes_out", "denied"}
    assert stats.broker["frames_in"] > 0

    as_dict = json.loads(json.dumps(stats.to_dict()))
    assert as_dict["agents"][0]["agent_id"] == "fragile"
    assert as_dict["broker"] == stats.broker


# -- opening and closing -------------------------------------------------------------


async def test_a_closed_runtime_refuses_to_start_agents(project: Path):
    rt = await open_runtime(project / "loom.toml")
    await rt.aclose()
    with pytest.raises(LoomError, match="this runtime is closed"):
        await rt.start(Quiet("quiet"))
    with pytest.raises(LoomError, match="closed"):
        await rt.emit("some.topic")
    await rt.aclose()  # idempotent


async def test_open_runtime_can_be_awaited_and_closed_with_aclose(project: Path):
    rt = await open_runtime(project / "loom.toml")
    try:
        assert rt.embedded
        bus_json = project / ".loom" / "bus.json"
        assert json.loads(bus_json.read_text())["pid"] == os.getpid()

        class Echo(Agent):
            @on_event("echo.ask")
            async def ask(self, event, ctx):
                await ctx.reply(event, event.data * 2)

        await rt.start(Echo("echo"))
        assert (await rt.request("echo.ask", 21)).data == 42
    finally:
        await rt.aclose()
    assert rt.status("echo") == "stopped"
    assert not bus_json.exists()  # the bus it ran is gone, and so is its record


class Doubler(Agent):
    @on_event("math.double")
    async def double(self, event, ctx):
        await ctx.reply(event, event.data * 2)


async def test_a_second_runtime_in_the_project_joins_the_embedded_bus(rt: Runtime, project: Path):
    record = json.loads((project / ".loom" / "bus.json").read_text())
    assert record["publish"] == rt.address.publish

    rt2 = await open_runtime(project / "loom.toml")
    try:
        assert not rt2.embedded
        assert rt2.address == rt.address
        assert rt2.statistics().broker is None

        await rt.start(Doubler("doubler"))
        await rt2.start(Relay("relay", "chain.start", "chain.end"))
        ends = await rt.subscribe("chain.end")
        await rt.emit("chain.start", "crossed")
        assert (await next_event(ends)).data == "crossed"  # rt -> rt2 -> rt
        assert (await rt2.request("math.double", 4)).data == 8  # rt2 -> rt -> rt2
    finally:
        await rt2.aclose()
    assert (project / ".loom" / "bus.json").exists()  # rt2 did not own it
    assert (await rt.request("math.double", 5)).data == 10


async def test_two_runtimes_in_one_process_do_not_report_false_losses(rt: Runtime, project: Path):
    rt2 = await open_runtime(project / "loom.toml")
    try:
        sub = await rt.subscribe("shared.topic")
        for runtime, n in ((rt, 1), (rt, 2), (rt2, 3), (rt, 4)):
            await runtime.emit("shared.topic", n)
            assert (await next_event(sub)).data == n  # one at a time: a known order
        assert sub.statistics().lost == 0, "nothing was lost, yet a gap was counted"
        assert rt.context.agent_id != rt2.context.agent_id
    finally:
        await rt2.aclose()


async def dead_pid() -> int:
    proc = await asyncio.create_subprocess_exec(PYTHON, "-c", "pass")
    await asyncio.wait_for(proc.wait(), WAIT)
    return proc.pid


def write_bus_json(project: Path, pid: int) -> str:
    port = free_port()
    folder = project / ".loom"
    folder.mkdir(exist_ok=True)
    publish = f"tcp://127.0.0.1:{port}"
    (folder / "bus.json").write_text(
        json.dumps(
            {
                "publish": publish,
                "subscribe": f"tcp://127.0.0.1:{port + 1}",
                "pid": pid,
                "started": time.time(),
                "kind": "embedded",
            }
        )
    )
    return publish


async def test_a_stale_bus_json_from_a_dead_process_starts_a_new_bus_at_its_address(
    project: Path,
):
    # the dead host's clients may still wait there: the new bus is where they reconnect
    stale = write_bus_json(project, await dead_pid())
    async with open_runtime(project / "loom.toml") as rt:
        assert rt.embedded
        record = json.loads((project / ".loom" / "bus.json").read_text())
        assert record["pid"] == os.getpid()
        assert record["publish"] == rt.address.publish == stale
        await rt.start(Doubler("doubler"))
        assert (await rt.request("math.double", 1)).data == 2


async def test_a_bus_json_pointing_at_no_bus_falls_back_to_an_embedded_one(project: Path):
    stale = write_bus_json(project, os.getpid())  # alive, but nothing listens there
    async with open_runtime(project / "loom.toml") as rt:
        assert rt.embedded
        assert rt.address.publish != stale


async def test_bus_argument_joins_an_explicit_url(project: Path, tmp_path: Path):
    url = f"tcp://127.0.0.1:{free_port()}"
    host = write_config(project, f'[bus]\nmode = "embedded"\nurl = "{url}"\n')
    elsewhere = write_config(tmp_path / "elsewhere", '[bus]\nmode = "embedded"\n')
    async with open_runtime(host) as rt:
        assert rt.embedded and rt.address.publish == url
        await rt.start(Doubler("doubler"))
        async with open_runtime(elsewhere, bus=url) as joined:
            assert not joined.embedded  # bus= wins over mode = "embedded"
            assert joined.address == rt.address
            assert (await joined.request("math.double", 8)).data == 16
    assert not (tmp_path / "elsewhere" / ".loom" / "bus.json").exists()


async def test_bus_argument_joins_a_default_embedded_bus_by_its_url(rt: Runtime, tmp_path: Path):
    # An embedded bus binds adjacent ports P and P+1, so its publish url names the whole bus.
    elsewhere = write_config(tmp_path / "elsewhere", '[bus]\nmode = "embedded"\n')
    await rt.start(Doubler("doubler"))
    async with open_runtime(elsewhere, bus=rt.address.publish) as joined:
        assert joined.address == rt.address
        assert (await joined.request("math.double", 6)).data == 12


async def test_connect_mode_with_no_bus_running_raises_bus_error(project: Path):
    config = write_config(project, '[bus]\nmode = "connect"\n')
    with pytest.raises(BusError, match=r"no bus .* and \[bus\] url is unset") as info:
        await open_runtime(config)
    assert "loom bus" in str(info.value)


async def test_connect_mode_with_a_silent_url_raises_bus_error(project: Path):
    url = f"tcp://127.0.0.1:{free_port()}"
    config = write_config(
        project, f'[bus]\nmode = "connect"\nurl = "{url}"\nconnect_timeout = 0.3\n'
    )
    started = time.monotonic()
    with pytest.raises(BusError, match="no bus answered") as info:
        await open_runtime(config)
    assert time.monotonic() - started < WAIT
    assert url in str(info.value)


async def test_connect_mode_joins_a_running_bus_by_url(project: Path, tmp_path: Path):
    url = f"tcp://127.0.0.1:{free_port()}"
    host = write_config(project, f'[bus]\nmode = "embedded"\nurl = "{url}"\n')
    client = write_config(tmp_path / "client", f'[bus]\nmode = "connect"\nurl = "{url}"\n')
    async with open_runtime(host) as rt, open_runtime(client) as joined:
        assert rt.embedded and not joined.embedded
        await rt.start(Doubler("doubler"))
        assert (await joined.request("math.double", 2)).data == 4


async def test_connect_mode_joins_the_projects_bus_through_discovery(rt: Runtime, project: Path):
    config = write_config(project, '[bus]\nmode = "connect"\n')
    await rt.start(Doubler("doubler"))
    async with open_runtime(config) as joined:
        assert not joined.embedded and joined.address == rt.address
        assert (await joined.request("math.double", 3)).data == 6
