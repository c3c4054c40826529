"""The runner over a fake transport: subscriptions, middleware, errors and status."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loom_kernel import Agent, Envelope, on_event, tool
from loom_kernel.agents import AgentRunner
from loom_kernel.config import RuntimeConfig
from loom_kernel.protocol import Handler, HandlerSpec
from tests.conftest import wait_until
from tests.support.fake_transport import Hub
from tests.support.seams import make_context

pytestmark = pytest.mark.timeout(10)


class Doubler(Agent):
    def __init__(self, agent_id: str = "doubler"):
        super().__init__(agent_id)
        self.seen: list[int] = []

    @on_event("num.*")
    async def double(self, event: Envelope, ctx) -> None:
        if event.data < 0:
            raise ValueError(f"negative {event.data}")
        self.seen.append(event.data)
        await ctx.emit("doubled", event.data * 2)

    @tool("math.add")
    async def add(self, a: int, b: int) -> int:
        return a + b


def recording(log: list[str], name: str):
    def middleware(spec: HandlerSpec, handler: Handler) -> Handler:
        async def wrapped(item, ctx) -> None:
            log.append(f"{name}>{spec.agent}:{spec.name}")
            await handler(item, ctx)
            log.append(f"{name}<")

        return wrapped

    return middleware


async def start(hub: Hub, tmp_path: Path, agent: Agent, **options) -> AgentRunner:
    runner = AgentRunner(agent, make_context(hub.transport(), agent.id, tmp_path), **options)
    await runner.start()
    return runner


async def test_middleware_wraps_every_handler_outermost_first(tmp_path: Path) -> None:
    hub, log = Hub(), []
    agent = Doubler()
    runner = await start(
        hub, tmp_path, agent, middleware=[recording(log, "outer"), recording(log, "inner")]
    )
    sender = make_context(hub.transport(), "sender", tmp_path)
    await sender.emit("num.one", 21)
    await wait_until(lambda: agent.seen == [21])
    await wait_until(lambda: len(log) == 4)
    assert log == ["outer>doubler:double", "inner>doubler:double", "inner<", "outer<"]
    assert "doubled" in hub.topics()
    await runner.stop()
    assert runner.status == "stopped"


async def test_a_failing_handler_is_counted_reported_and_the_agent_goes_on(tmp_path: Path) -> None:
    hub = Hub()
    agent = Doubler()
    runner = await start(hub, tmp_path, agent)
    observer = hub.transport()
    errors = await observer.subscribe("loom.agent.*.error")
    sender = make_context(hub.transport(), "sender", tmp_path)
    await sender.emit("num.bad", -1)
    report = await errors.get(timeout=5)
    assert report.data["error"] == "ValueError" and report.data["where"] == "double"
    await sender.emit("num.good", 2)
    await wait_until(lambda: agent.seen == [2])
    assert runner.errors == 1 and runner.last_error == "ValueError: negative -1"
    assert runner.status == "running"
    await runner.stop()


async def test_a_failed_request_gets_an_error_reply_not_a_timeout(tmp_path: Path) -> None:
    from loom_kernel import RemoteError

    hub = Hub()
    runner = await start(hub, tmp_path, Doubler())
    asker = make_context(hub.transport(), "asker", tmp_path)
    with pytest.raises(RemoteError, match="negative -4"):
        await asker.request("num.x", -4, timeout=5)
    await runner.stop()


async def test_a_tool_is_served_with_its_arguments_checked(tmp_path: Path) -> None:
    from loom_kernel import RemoteError

    hub = Hub()
    runner = await start(hub, tmp_path, Doubler())
    asker = make_context(hub.transport(), "asker", tmp_path)
    assert (await asker.request("loom.tool.math.add", {"a": 2, "b": 3}, timeout=5)).data == 5
    with pytest.raises(RemoteError, match="b"):
        await asker.request("loom.tool.math.add", {"a": 2}, timeout=5)
    assert [info.name for info in runner.tools] == ["math.add"]
    await runner.stop()


async def test_an_observer_gets_an_untraced_spec(tmp_path: Path) -> None:
    specs: list[HandlerSpec] = []

    def spy(spec: HandlerSpec, handler: Handler) -> Handler:
        specs.append(spec)
        return handler

    class Watcher(Agent):
        traced = False

        @on_event("num.*")
        async def watch(self, event, ctx) -> None: ...

    runner = await start(Hub(), tmp_path, Watcher("watcher"), middleware=[spy])
    assert [(s.agent, s.traced, s.pattern) for s in specs] == [("watcher", False, "num.*")]
    assert runner.statistics().to_dict()["observer"] is True  # its heartbeat says so
    await runner.stop()


async def test_a_traced_agent_reports_itself_as_no_observer(tmp_path: Path) -> None:
    runner = await start(Hub(), tmp_path, Doubler())
    assert runner.statistics().observer is False
    await runner.stop()


async def test_a_handler_running_past_stall_after_is_stalled(tmp_path: Path) -> None:
    release = asyncio.Event()

    class Slow(Agent):
        @on_event("slow.go")
        async def go(self, event, ctx) -> None:
            await release.wait()

    hub = Hub()
    settings = RuntimeConfig(stall_after=0.05, idle_after=0.05)
    runner = await start(hub, tmp_path, Slow("slow"), settings=settings)
    await make_context(hub.transport(), "s", tmp_path).emit("slow.go")
    await wait_until(lambda: runner.status == "stalled")
    release.set()
    await wait_until(lambda: runner.status == "idle")
    await runner.stop()


async def test_on_start_failure_fails_the_agent_with_its_error(tmp_path: Path) -> None:
    from loom_kernel import LoomError

    class Broken(Agent):
        async def on_start(self, ctx) -> None:
            raise RuntimeError("no database")

    runner = AgentRunner(Broken("broken"), make_context(Hub().transport(), "broken", tmp_path))
    with pytest.raises(LoomError, match="failed to start: RuntimeError: no database"):
        await runner.start()
    assert runner.status == "failed"


# -- handler timeouts ------------------------------------------------------------------


class Hanging(Agent):
    """``hang.ask`` never returns unless released; ``hang.fast`` answers at once."""

    def __init__(self, agent_id: str = "hanging"):
        super().__init__(agent_id)
        self.cancelled = 0
        self.release = asyncio.Event()

    @on_event("hang.ask", timeout=0.1)
    async def ask(self, event: Envelope, ctx) -> None:
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        await ctx.reply(event, "done")

    @on_event("hang.default")
    async def default(self, event: Envelope, ctx) -> None:
        await self.release.wait()

    @on_event("hang.own")
    async def own(self, event: Envelope, ctx) -> None:
        raise TimeoutError("the handler's own timeout")


async def test_a_handler_past_its_timeout_is_cancelled_reported_and_answered(
    tmp_path: Path,
) -> None:
    from loom_kernel import RemoteError

    hub = Hub()
    agent = Hanging()
    runner = await start(hub, tmp_path, agent)
    errors = await hub.transport().subscribe("loom.agent.hanging.error")
    asker = make_context(hub.transport(), "asker", tmp_path)
    with pytest.raises(
        RemoteError, match=r"HandlerTimeout: ask of agent 'hanging' ran over its 0.1 s"
    ):
        await asker.request("hang.ask", None, timeout=5)
    report = await errors.get(timeout=5)
    assert (report.data["error"], report.data["where"]) == ("HandlerTimeout", "ask")
    assert "@on_event(..., timeout=)" in report.data["message"]
    assert agent.cancelled == 1
    assert (runner.timeouts, runner.errors) == (1, 1)
    assert runner.statistics().timeouts == 1
    agent.release.set()  # the agent goes on with the next event
    assert (await asker.request("hang.ask", None, timeout=5)).data == "done"
    await runner.stop()


async def test_the_runtime_handler_timeout_applies_to_handlers_without_their_own(
    tmp_path: Path,
) -> None:
    hub = Hub()
    runner = await start(hub, tmp_path, Hanging(), settings=RuntimeConfig(handler_timeout=0.1))
    errors = await hub.transport().subscribe("loom.agent.hanging.error")
    await make_context(hub.transport(), "s", tmp_path).emit("hang.default")
    report = await errors.get(timeout=5)
    assert (report.data["error"], report.data["where"]) == ("HandlerTimeout", "default")
    await runner.stop()


async def test_a_handlers_own_timeout_error_is_not_a_handler_timeout(tmp_path: Path) -> None:
    hub = Hub()
    runner = await start(hub, tmp_path, Hanging(), settings=RuntimeConfig(handler_timeout=5.0))
    errors = await hub.transport().subscribe("loom.agent.hanging.error")
    await make_context(hub.transport(), "s", tmp_path).emit("hang.own")
    report = await errors.get(timeout=5)
    assert (report.data["error"], report.data["message"]) == (
        "TimeoutError",
        "the handler's own timeout",
    )
    assert runner.timeouts == 0
    await runner.stop()


@pytest.mark.parametrize("timeout", [0, -1, "1"])
def test_a_bad_handler_timeout_is_refused_at_decoration(timeout: object) -> None:
    with pytest.raises(ValueError, match="timeout="):
        on_event("x.y", timeout=timeout)  # type: ignore[arg-type]
