"""Hot reload: new code swapped into running agents, on a real bus."""

from __future__ import annotations

import asyncio
import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from loom_kernel import Agent, ReloadError, Runtime, on_event
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(60)

V1 = """
from loom_kernel import Agent, on_event, tool

class Counter(Agent):
    @on_event("count.*")
    async def count(self, event, ctx):
        self.state["n"] = self.state.get("n", 0) + 1
        await ctx.emit("counted", {"n": self.state["n"], "version": 1})

    @tool("counter.version")
    async def version(self) -> int:
        return 1
"""

V2 = """
from loom_kernel import Agent, on_event, tool

class Counter(Agent):
    @on_event("count.*")
    async def count(self, event, ctx):
        self.state["n"] = self.state.get("n", 0) + 1
        await ctx.emit("counted", {"n": self.state["n"], "version": 2})

    @on_event("extra.*")
    async def extra(self, event, ctx):
        await ctx.emit("counted", {"extra": True, "version": 2})

    @tool("counter.version")
    async def version(self) -> int:
        return 2
"""


@pytest.fixture
def module(project: Path) -> Iterator[tuple[str, Path]]:
    """A module of the test's own, importable, written afresh by the test."""
    name = f"reload_agents_{project.name.replace('-', '_')}"
    path = project / f"{name}.py"
    path.write_text(V1)
    sys.path.insert(0, str(project))
    try:
        yield name, path
    finally:
        sys.path.remove(str(project))
        sys.modules.pop(name, None)


def write(path: Path, source: str) -> None:
    path.write_text(textwrap.dedent(source))
    importlib.invalidate_caches()


async def counter(rt: Runtime, name: str) -> Agent:
    cls = importlib.import_module(name).Counter
    agent = cls("counter")
    await rt.start(agent)
    return agent


async def test_new_code_takes_over_and_keeps_state_memory_and_sequence(
    rt: Runtime, module: tuple[str, Path]
) -> None:
    name, path = module
    await counter(rt, name)
    counted = await rt.subscribe("counted")
    await rt.context.memory.add("note", "before", durable=False)
    await rt.emit("count.a", 1)
    first = await counted.get(5)
    assert first.data == {"n": 1, "version": 1}
    write(path, V2)
    result = await rt.reload("counter")
    assert (result.version, result.added, result.removed) == (2, ["extra"], [])
    assert sorted(result.kept) == ["count", "tool:counter.version"]
    await rt.emit("count.a", 2)
    second = await counted.get(5)
    assert second.data == {"n": 2, "version": 2}  # state carried over, new code running
    assert second.seq == first.seq + 1  # the same sequence numbers go on
    assert await rt.tool("counter.version") == 2
    await rt.emit("extra.x")  # a handler the new version added is live
    assert (await counted.get(5)).data == {"extra": True, "version": 2}


async def test_a_handler_the_new_version_drops_stops(rt: Runtime, module: tuple[str, Path]) -> None:
    name, path = module
    write(path, V2)
    await counter(rt, name)
    write(path, V1)
    result = await rt.reload("counter")
    assert result.removed == ["extra"]
    counted = await rt.subscribe("counted")
    await rt.emit("extra.x")
    await rt.emit("count.a")
    assert (await counted.get(5)).data["version"] == 1  # the extra event went nowhere
    assert len(counted.mailbox) == 0


async def test_a_syntax_error_keeps_the_old_version_and_says_where(
    rt: Runtime, module: tuple[str, Path]
) -> None:
    name, path = module
    await counter(rt, name)
    reports = await rt.subscribe("loom.agent.counter.reloaded")
    write(path, V1.replace('self.state["n"] =', 'self.state["n"] = = '))
    with pytest.raises(ReloadError, match="syntax error") as caught:
        await rt.reload("counter")
    assert caught.value.file == str(path) and caught.value.line == 7
    report = await reports.get(5)
    assert report.data["ok"] is False and report.data["line"] == 7
    counted = await rt.subscribe("counted")
    await rt.emit("count.a")
    assert (await counted.get(5)).data["version"] == 1  # still the old code
    assert rt.agents["counter"].version == 1


async def test_an_error_while_the_module_runs_names_its_line(
    rt: Runtime, module: tuple[str, Path]
) -> None:
    name, path = module
    await counter(rt, name)
    write(path, V1 + "\nraise RuntimeError('no config')\n")
    with pytest.raises(ReloadError, match="RuntimeError: no config") as caught:
        await rt.reload("counter")
    assert caught.value.line == V1.count("\n") + 2


async def test_a_missing_class_keeps_the_old_version(rt: Runtime, module: tuple[str, Path]) -> None:
    name, path = module
    await counter(rt, name)
    write(path, V1.replace("class Counter", "class Renamed"))
    with pytest.raises(ReloadError, match="has no class 'Counter' any more"):
        await rt.reload("counter")
    assert rt.status("counter") in ("running", "idle")


async def test_a_failing_on_reload_keeps_the_old_version(rt: Runtime) -> None:
    class Old(Agent):
        @on_event("x.*")
        async def seen(self, event, ctx) -> None:
            await ctx.emit("seen", "old")

    class Broken(Agent):
        @on_event("y.*")
        async def other(self, event, ctx) -> None: ...

        async def on_reload(self, old, ctx) -> None:
            raise ValueError("cannot carry the cache")

    await rt.start(Old("a"))
    with pytest.raises(ReloadError, match="on_reload failed: ValueError: cannot carry"):
        await rt.reload("a", Broken)
    seen = await rt.subscribe("seen")
    await rt.emit("x.1")
    assert (await seen.get(5)).data == "old"
    stats = rt.client.statistics().subscriptions
    assert not [s for s in stats if s["pattern"] == "y.*"]  # its new subscription is gone


async def test_in_a_notebook_the_new_class_is_passed_in(rt: Runtime) -> None:
    class Greeter(Agent):
        @on_event("hi")
        async def hi(self, event, ctx) -> None:
            await ctx.reply(event, "hello")

    await rt.start(Greeter("greeter"))
    assert (await rt.request("hi")).data == "hello"

    class Greeter(Agent):  # redefined, as in a notebook cell run again
        @on_event("hi")
        async def hi(self, event, ctx) -> None:
            await ctx.reply(event, "bonjour")

    await rt.reload("greeter", Greeter)
    assert (await rt.request("hi")).data == "bonjour"


async def test_a_call_in_flight_finishes_on_the_old_code_and_the_queue_goes_to_the_new(
    rt: Runtime,
) -> None:
    release = asyncio.Event()

    class Slow(Agent):
        @on_event("job.*")
        async def job(self, event, ctx) -> None:
            await release.wait()
            await ctx.emit("done", {"job": event.data, "by": "old"})

    class Fast(Agent):
        @on_event("job.*")
        async def job(self, event, ctx) -> None:
            await ctx.emit("done", {"job": event.data, "by": "new"})

    await rt.start(Slow("worker"))
    done = await rt.subscribe("done")
    await rt.emit("job.1", 1)
    await wait_until(lambda: rt.agents["worker"].statistics().status == "running")
    await rt.emit("job.2", 2)  # queued behind the one in flight
    await wait_until(lambda: rt.agents["worker"].statistics().queue_depth == 1)
    await rt.reload("worker", Fast)
    release.set()
    first, second = await done.get(5), await done.get(5)
    assert (first.data, second.data) == ({"job": 1, "by": "old"}, {"job": 2, "by": "new"})


async def test_no_event_is_lost_or_handled_twice_while_reloading_under_load(
    rt: Runtime,
) -> None:
    class Tally(Agent):
        @on_event("load.*")
        async def tally(self, event, ctx) -> None:
            self.state.setdefault("seen", []).append(event.data)

    class Ticker(Agent):
        async def run(self, ctx) -> None:
            for n in range(3000):  # ~1,000 events a second for 3 s
                await ctx.emit("load.tick", n)
                if n % 10 == 9:
                    await asyncio.sleep(0.01)

    tally = Tally("tally")
    await rt.start(tally)
    await rt.start(Ticker("ticker"))
    reloads = 0
    while rt.agents["ticker"].statistics().emitted < 3000:
        await asyncio.sleep(0.2)
        await rt.reload("tally", Tally)
        reloads += 1
    runner = rt.agents["tally"]
    await wait_until(lambda: len(runner.agent.state.get("seen", [])) == 3000, 10)
    assert sorted(runner.agent.state["seen"]) == list(range(3000))  # each once
    assert reloads >= 5 and runner.version == reloads + 1


async def test_reload_module_swaps_every_agent_of_the_module(
    rt: Runtime, module: tuple[str, Path]
) -> None:
    name, path = module
    untooled = V2.split("    @tool")[0]  # two agents of one class cannot serve one tool
    write(path, untooled)
    cls = importlib.import_module(name).Counter
    await rt.start(cls("c1"), cls("c2"))
    write(path, untooled.replace('version": 2', 'version": 3'))
    results = await rt.reload_module(name)
    assert sorted(result.agent for result in results) == ["c1", "c2"]
    assert {rt.agents[a].version for a in ("c1", "c2")} == {2}
    assert await rt.reload_module("no.such.module") == []


async def test_a_reload_is_a_span_and_an_event(rt: Runtime) -> None:
    class A(Agent):
        @on_event("a")
        async def a(self, event, ctx) -> None: ...

    await rt.start(A("a"))
    reports = await rt.subscribe("loom.agent.a.reloaded")
    await rt.reload("a", A)
    report = await reports.get(5)
    assert report.data["ok"] is True and report.data["version"] == 2
    await wait_until(lambda: bool(rt.span_store.query(name="reload a")), 10)


async def test_an_unknown_agent_is_a_clear_error(rt: Runtime) -> None:
    from loom_kernel import LoomError

    with pytest.raises(LoomError, match="no running agent 'ghost' here"):
        await rt.reload("ghost")
