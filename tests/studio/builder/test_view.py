"""The builder's view without a browser: add, wire, generate and run on a real bus."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loom_kernel import open_runtime
from loom_studio.builder.view import Builder
from loom_studio.feed import StudioFeed
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "loom.toml").write_text("[runtime]\nheartbeat_interval = 0.2\n")
    return tmp_path


async def test_add_wire_generate_and_run_two_agents(project: Path) -> None:
    async with open_runtime(project / "loom.toml") as rt:
        feed = StudioFeed()
        await feed.attach(rt)
        builder = Builder(project, runtime=rt, feed=feed)
        source = builder.add("producer", (10, 10))
        sink = builder.add("sink", (300, 10))
        assert (source, sink) == ("producer-1", "sink-1")
        builder.update(source, interval=0.05)
        builder.wire(source, sink)
        assert builder.pending[sink].subscribe == "producer_1.out"
        graph = builder.canvas.graph
        assert [(e["source"], e["target"]) for e in graph["edges"]] == [(source, sink)]
        assert {n["kind"] for n in graph["nodes"]} == {"new"}
        assert builder.generate() == ["agents/producer_1.py", "agents/sink_1.py"]
        assert not builder.pending and "declared producer-1, sink-1" in builder.canvas.message
        assert await builder.run() == [source, sink]
        await wait_until(lambda: (feed.agents.get(sink) or {}).get("handled", 0) > 0, 20)

        def live_edge() -> bool:
            builder.redraw()
            [edge] = builder.canvas.graph["edges"]
            return edge["rate"] > 0

        await wait_until(live_edge, 20)
        assert {n["kind"] for n in builder.canvas.graph["nodes"]} == {"code"}
        # Run again: the running agents are reloaded, not started twice
        assert await builder.run() == [source, sink]
        await asyncio.sleep(0)
        await feed.aclose()


async def test_a_wire_to_an_agent_in_code_adds_one_method(project: Path) -> None:
    (project / "agents").mkdir()
    (project / "agents" / "__init__.py").write_text("")
    code = (
        "from loom_kernel import Agent, Context, Envelope, on_event\n\n\n"
        "class Watcher(Agent):\n"
        '    id = "watcher"  # mine\n\n'
        '    @on_event("other.*")\n'
        "    async def handle(self, event: Envelope, ctx: Context) -> None:\n"
        "        pass  # my body\n"
    )
    (project / "agents" / "watcher.py").write_text(code)
    async with open_runtime(project / "loom.toml") as rt:
        feed = StudioFeed()
        await feed.attach(rt)
        builder = Builder(project, runtime=rt, feed=feed)
        source = builder.add("producer")
        builder.wire(source, "watcher")
        after = (project / "agents" / "watcher.py").read_text()
        assert after.startswith(code)  # the user's lines, as they were; one method added
        assert '@on_event("producer_1.out")' in after and "async def on_producer_1_out" in after
        assert any(e["target"] == "watcher" for e in builder.canvas.graph["edges"])
        await feed.aclose()


async def test_what_the_builder_cannot_do_it_says(project: Path) -> None:
    async with open_runtime(project / "loom.toml") as rt:
        feed = StudioFeed()
        await feed.attach(rt)
        builder = Builder(project, runtime=rt, feed=feed)
        sink = builder.add("sink")
        other = builder.add("sink")
        builder.canvas.action = {"kind": "wire", "source": sink, "target": other, "n": 1}
        assert builder.canvas.message.startswith("error: sink-1 emits nothing")
        builder.canvas.action = {"kind": "add", "template": "nope", "n": 2}
        assert "no template 'nope'" in builder.canvas.message
        builder.generate()  # the sinks handle nothing yet: said, nothing written
        assert "handles" in builder.canvas.message or "pattern" in builder.canvas.message
        assert not (project / "agents").exists()
        await feed.aclose()
