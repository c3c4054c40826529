"""The editor as ``loom studio`` uses it: the agents in a ``loom run`` worker (another
process, started without ``--reload``), the editor on a runtime of this process. A save
reaches the worker through the bus (``loom.code.reload``) and is swapped in there."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from loom_kernel import Runtime, open_runtime
from loom_studio.editor import Editor
from loom_studio.topic_index import TopicIndex
from tests.conftest import PYTHON, python_env, wait_until

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]

GREETER = """\
from loom_kernel import Agent, on_event


class Greeter(Agent):
    @on_event("greet.*")
    async def greet(self, event, ctx):
        self.state["served"] = self.state.get("served", 0) + 1
        await ctx.reply(event, {"text": "hello", "served": self.state["served"]})
"""


@pytest.fixture
def worker(project: Path) -> Iterator[Path]:
    """``loom run`` in the project: one worker running the greeter (its bus embedded)."""
    (project / "agents").mkdir()
    (project / "agents" / "__init__.py").write_text("")
    (project / "agents" / "greeter.py").write_text(GREETER)
    with (project / "loom.toml").open("a") as toml:
        toml.write('\n[agents.greeter]\nmodule = "agents.greeter:Greeter"\n')
    run = subprocess.Popen(
        [PYTHON, "-m", "loom_kernel.cli.app", "run"], cwd=project, env=python_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield project / "agents" / "greeter.py"
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=30)


@pytest.fixture
async def studio(worker: Path, project: Path) -> AsyncIterator[tuple[Runtime, TopicIndex]]:
    """The studio's runtime, joined to the worker's bus once it is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while not (project / ".loom" / "bus.json").exists():
        assert loop.time() < deadline, "loom run started no bus"
        await asyncio.sleep(0.2)
    async with open_runtime(project / "loom.toml") as rt:
        index = TopicIndex()
        await index.attach(rt)
        await wait_until(lambda: "greeter" in index.agents, timeout=60)
        yield rt, index


async def ask(rt: Runtime) -> dict:
    return (await rt.request("greet.me", {}, timeout=10)).data


async def test_a_save_reloads_the_agent_in_its_worker_process(
    studio: tuple[Runtime, TopicIndex], worker: Path
) -> None:
    rt, index = studio
    assert not rt.embedded  # the bus is the worker's
    pid = index.agents["greeter"]["pid"]
    assert pid != os.getpid()  # the agent runs in the worker, not here
    assert await ask(rt) == {"text": "hello", "served": 1}
    editor = Editor(runtime=rt, index=index)
    assert editor.source is not None and editor.source.path.parts[-2:] == ("agents", "greeter.py")
    editor.code.value = editor.code.value.replace('"hello"', '"bonjour"')
    outcome = await editor.save()
    assert outcome is not None and outcome.ok, outcome
    assert outcome.versions == {"greeter": 2} and outcome.silent == []
    answer = await ask(rt)
    assert answer == {"text": "bonjour", "served": 2}  # new code, state kept
    await wait_until(lambda: index.agents["greeter"].get("version") == 2, timeout=10)
    assert index.agents["greeter"]["pid"] == pid  # the same worker process

    editor.code.value = editor.code.value.replace("async def greet", "async def def greet")
    outcome = await editor.save()
    assert outcome is not None and not outcome.ok and outcome.line == 6
    assert editor.code.annotations[0]["row"] == 5
    assert (await ask(rt))["text"] == "bonjour"  # the worker goes on with version 2
