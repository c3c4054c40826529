"""The live editor on a real bus: save reloads the running agent (in this process, or in
another runtime through ``loom.code.reload``), a broken save marks its line while the old
version keeps answering, and the history diffs and reverts."""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from loom_kernel import Runtime, open_runtime
from loom_studio.agent_sources import module_file, project_agents
from loom_studio.editor import Editor
from loom_studio.topic_index import TopicIndex
from loom_studio.versions import VersionHistory, unified_diff
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(60)

SOURCE = """\
from loom_kernel import Agent, on_event


class Greeter(Agent):
    @on_event("greet.*")
    async def greet(self, event, ctx):
        await ctx.reply(event, f"hello, {event.data}")
"""


@pytest.fixture
def module(project: Path) -> Iterator[tuple[str, Path]]:
    """An agent module of the project, named in its loom.toml as ``[agents.greeter]``."""
    name = f"greeters_{project.name.replace('-', '_')}"
    path = project / f"{name}.py"
    path.write_text(SOURCE)
    with (project / "loom.toml").open("a") as toml:
        toml.write(f'\n[agents.greeter]\nmodule = "{name}:Greeter"\n')
    sys.path.insert(0, str(project))
    try:
        yield name, path
    finally:
        sys.path.remove(str(project))
        sys.modules.pop(name, None)


@pytest.fixture
async def greeter(rt: Runtime, module: tuple[str, Path]) -> Runtime:
    await rt.start(importlib.import_module(module[0]).Greeter("greeter"))
    return rt


async def greeting(rt: Runtime) -> str:
    return (await rt.request("greet.x", "Ada", timeout=5)).data


@pytest.fixture
async def editor(greeter: Runtime) -> Editor:
    index = TopicIndex()
    await index.attach(greeter)
    return Editor(runtime=greeter, index=index)


def test_project_agents_are_the_project_files(module: tuple[str, Path], project: Path) -> None:
    from loom_kernel import load_config

    name, path = module
    config = load_config(project / "loom.toml")
    found = project_agents(config, {"nb": {"module": "__main__"}, "pkg": {"module": "json"}})
    assert list(found) == ["greeter"]  # a notebook's or a package's agent is not editable
    assert (found["greeter"].module, found["greeter"].path) == (name, path.resolve())
    assert module_file("json", project) is None


async def test_save_reloads_the_running_agent_in_this_process(
    editor: Editor, greeter: Runtime, project: Path
) -> None:
    assert editor.source is not None and editor.source.agent == "greeter"
    assert editor.code.language == "python" and "class Greeter" in editor.code.value
    assert await greeting(greeter) == "hello, Ada"
    editor.code.value = editor.code.value.replace('f"hello, {event.data}"', 'f"hi, {event.data}!"')
    outcome = await editor.save()
    assert outcome is not None and outcome.ok and outcome.versions == {"greeter": 2}
    assert await greeting(greeter) == "hi, Ada!"
    assert 'f"hi, {event.data}!"' in editor.source.path.read_text()
    assert "greeter → v2" in editor.status.object and editor.status.alert_type == "success"
    assert (project / ".loom" / "editor" / "greeter" / "2.py").exists()


async def test_a_syntax_error_marks_its_line_and_the_old_version_goes_on(
    editor: Editor, greeter: Runtime
) -> None:
    editor.code.value = editor.code.value.replace("await ctx.reply(", "await ctx.reply((")
    outcome = await editor.save()
    assert outcome is not None and not outcome.ok
    assert outcome.line in (7, 8)  # Python names the open parenthesis' line or the next
    [mark] = editor.code.annotations
    assert (mark["row"], mark["type"]) == (outcome.line - 1, "error")
    assert f"line {outcome.line}:" in editor.status.object
    assert "the previous version goes on" in editor.status.object
    assert await greeting(greeter) == "hello, Ada"  # still the old code
    assert greeter.agents["greeter"].version == 1


async def test_history_diffs_and_reverts(editor: Editor, greeter: Runtime) -> None:
    editor.code.value = editor.code.value.replace("hello", "bonjour")
    await editor.save()
    assert await greeting(greeter) == "bonjour, Ada"
    numbers = list(editor.versions.options.values())
    assert numbers == [2, 1]  # newest first: saved, opened
    assert editor.versions.value == 1  # the diff shows the last change
    assert "bonjour" in editor.diff.object
    diff = editor.show_diff(1)
    assert '-        await ctx.reply(event, f"hello, {event.data}")' in diff
    assert '+        await ctx.reply(event, f"bonjour, {event.data}")' in diff
    assert "color:#1b5e20" in editor.diff.object  # the added line, green
    outcome = await editor.revert(1)
    assert outcome is not None and outcome.ok
    assert await greeting(greeter) == "hello, Ada"
    assert editor.source is not None and editor.source.path.read_text() == SOURCE
    assert [v.note for v in editor.history.versions()] == ["opened", "saved", "revert to 1"]


@pytest.fixture
async def studio_runtime(greeter: Runtime, tmp_path: Path) -> AsyncIterator[Runtime]:
    """The studio's own runtime, joined to the bus: the agents run elsewhere."""
    folder = tmp_path / "studio"
    folder.mkdir()
    (folder / "loom.toml").write_text('[bus]\nmode = "embedded"\n')
    async with open_runtime(folder / "loom.toml", bus=greeter.address.publish) as joined:
        yield joined


async def test_save_reloads_agents_of_another_process_through_the_bus(
    greeter: Runtime, studio_runtime: Runtime
) -> None:
    index = TopicIndex()
    await index.attach(studio_runtime)
    await wait_until(lambda: "greeter" in index.agents)  # its heartbeat says where it runs
    editor = Editor(runtime=studio_runtime, config=greeter.config, index=index)
    assert editor.source is not None and editor.source.agent == "greeter"
    editor.code.value = editor.code.value.replace("hello", "salut")
    outcome = await editor.save()
    assert outcome is not None and outcome.ok and outcome.versions == {"greeter": 2}
    assert await greeting(studio_runtime) == "salut, Ada"
    editor.code.value = editor.code.value.replace("    async def greet", "    async def greet(")
    outcome = await editor.save()
    assert outcome is not None and not outcome.ok and "syntax error" in (outcome.error or "")
    assert outcome.line == 6 and editor.code.annotations[0]["row"] == 5
    assert await greeting(studio_runtime) == "salut, Ada"


async def test_saving_a_module_nothing_runs_still_checks_its_syntax(
    module: tuple[str, Path], rt: Runtime
) -> None:
    index = TopicIndex()
    editor = Editor(runtime=rt, index=index)  # the agent is in loom.toml, not running
    assert editor.source is not None
    editor.code.value = "def broken(:\n"
    await editor.save()
    assert editor.code.annotations[0]["row"] == 0
    assert "line 1: syntax error" in editor.status.object


def test_a_version_is_recorded_once_per_change(tmp_path: Path) -> None:
    history = VersionHistory(tmp_path, "a")
    assert history.record("x = 1\n", "opened") == 1
    assert history.record("x = 1\n", "saved") == 1
    assert history.record("x = 2\n", "saved") == 2
    assert history.read(1) == "x = 1\n"
    assert unified_diff("x = 1\n", "x = 1\n", "a", "b") == ""


async def test_in_a_notebook_the_editor_embeds_the_ace_modules_it_loads(
    module: tuple[str, Path], rt: Runtime
) -> None:
    editor = Editor(runtime=rt, index=TopicIndex())
    script = editor.output_script()
    for name in ("ace/mode/python", "ace/theme/github_light_default", "ace/snippets/python"):
        assert f'"{name}": "data:text/javascript;base64,' in script
    assert "setModuleUrl" in script


async def test_a_process_that_does_not_answer_is_named(
    module: tuple[str, Path], rt: Runtime
) -> None:
    import time

    from loom_studio.code_reload import reload_module, remote_processes

    name, _ = module
    now = time.time()
    beats = {
        "ghost": {"module": name, "process": "rt-gone", "status": "running", "seen": now},
        "old": {"module": name, "process": "rt-old", "status": "running", "seen": now - 60},
        "done": {"module": name, "process": "rt-done", "status": "stopped", "seen": now},
    }
    assert remote_processes(beats, name, rt.client.client_id, now) == {"rt-gone"}
    outcome = await reload_module(rt, name, beats, timeout=0.3)
    assert outcome.ok and outcome.versions == {} and outcome.silent == ["rt-gone"]
