"""`loom init` and `loom create agent`, run as real commands; what they write runs for real:
in a runtime of the test, under `loom run`, and in a notebook kernel under nbval."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

from loom_kernel import (
    Envelope,
    LoomConfig,
    RemoteError,
    RequestTimeout,
    Runtime,
    ToolError,
    load_config,
    open_runtime,
)
from loom_kernel.bus.zeromq.discovery import read_discovery
from tests.conftest import PYTHON, WAIT, python_env

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]

PROJECT_FILES = [
    "loom.toml",
    "agents/__init__.py",
    "agents/greeter.py",
    "notebooks/getting_started.ipynb",
    "README.md",
    ".gitignore",
]
USER_NOTE = "# my own note: this comment stays where it is\n"


def child_env() -> dict[str, str]:
    env = {**python_env(), "COLUMNS": "500"}  # error lines unwrapped, whatever the tmp path
    env.pop("LOOM_CONFIG", None)
    return env


def loom(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "loom_kernel.cli.app", *args],
        cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def fails(cwd: Path, *args: str) -> str:
    """Run a command that must fail like every Loom error: exit 1, one red line."""
    result = loom(cwd, *args)
    assert result.returncode == 1, result
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.fixture(scope="module")
def initialized(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One `loom init` for the module: the project folder and what the command printed."""
    parent = tmp_path_factory.mktemp("init")
    result = loom(parent, "init", "hello-loom", "--name", 'Hello "Loom"')
    assert result.returncode == 0, result.stderr
    return parent / "hello-loom", result.stdout


@pytest.fixture
def project(initialized: tuple[Path, str], tmp_path: Path) -> Path:
    """A fresh copy of the generated project, with a comment of the user's in loom.toml."""
    folder = tmp_path / "proj"
    shutil.copytree(initialized[0], folder)
    with (folder / "loom.toml").open("a", encoding="utf-8") as file:
        file.write("\n" + USER_NOTE)
    return folder


@contextlib.contextmanager
def project_imports(project: Path) -> Iterator[None]:
    """The project folder on sys.path, as `loom run` has it; its `agents` forgotten after."""
    sys.path.insert(0, str(project))
    importlib.invalidate_caches()
    try:
        yield
    finally:
        sys.path.remove(str(project))
        for name in [name for name in sys.modules if name.split(".")[0] == "agents"]:
            del sys.modules[name]


def create_agent(
    project: Path, name: str, template: str, *options: str, cwd: Path | None = None
) -> LoomConfig:
    """`loom create agent`, then check loom.toml kept its text and loads with the new entry."""
    before = (project / "loom.toml").read_text(encoding="utf-8")
    result = loom(cwd or project, "create", "agent", name, "--template", template, *options)
    assert result.returncode == 0, result.stderr
    assert f"[agents.{name}]" in result.stdout
    after = (project / "loom.toml").read_text(encoding="utf-8")
    assert after.startswith(before) and USER_NOTE in after  # appended as text
    config = load_config(project / "loom.toml")
    assert config.agents[name].restart == "on-failure"
    return config


def agent_module(config: LoomConfig, name: str) -> ModuleType:
    """Import the module of ``[agents.<name>]`` (inside :func:`project_imports`)."""
    return importlib.import_module(config.agents[name].module.partition(":")[0])


# -- loom init ----------------------------------------------------------------------------


def test_init_writes_a_project_whose_loom_toml_declares_the_greeter(
    initialized: tuple[Path, str],
) -> None:
    folder, printed = initialized
    for relative in PROJECT_FILES:
        assert (folder / relative).is_file(), relative
        assert relative in printed
    assert "loom run" in printed and "cd hello-loom" in printed
    config = load_config(folder / "loom.toml")
    assert config.agents["greeter"].module == "agents.greeter:Greeter"
    assert config.agents["greeter"].settings == {"greeting": "Hello"}
    assert (folder / "loom.toml").read_text().startswith('# Hello "Loom": Loom project settings')
    assert ".loom/" in (folder / ".gitignore").read_text().splitlines()
    readme = (folder / "README.md").read_text()
    assert all(text in readme for text in ("loom run", "loom status", "getting_started.ipynb"))
    notebook = nbformat.read(folder / "notebooks" / "getting_started.ipynb", as_version=4)
    nbformat.validate(notebook)
    assert notebook.cells[0].source.startswith('# Hello "Loom": getting started')


async def test_generated_greeter_answers_requests_and_serves_its_tool(project: Path) -> None:
    config_path = project / "loom.toml"
    config_path.write_text(config_path.read_text().replace('greeting = "Hello"', 'greeting = "Hi"'))
    with project_imports(project):
        from agents.greeter import Greeter

        async with open_runtime(config_path) as rt:
            await rt.start(Greeter("greeter"))
            await rt.emit("hello.crowd", {"name": "all"})  # a plain event: no reply, no error
            reply = await rt.request("hello.x", {"name": "Ada"}, timeout=WAIT)
            assert reply.data == {"greeting": "Hi, Ada!"}  # the settings of loom.toml
            assert await rt.tool("greeter.greet", {"name": "Grace"}) == "Hi, Grace!"
            assert rt.agents["greeter"].statistics().errors == 0


def test_generated_notebook_passes_nbval(project: Path) -> None:
    result = subprocess.run(
        [PYTHON, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q",
         "notebooks/getting_started.ipynb"],
        cwd=project, env=child_env(), capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout


async def test_generated_project_runs_under_loom_run(project: Path) -> None:
    await asyncio.to_thread(create_agent, project, "prices", "producer")
    supervisor = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "loom_kernel.cli.app", "run",
        cwd=project, env=child_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while read_discovery(project) is None:  # join its bus, never start a second one
            assert supervisor.returncode is None and loop.time() < deadline, "loom run: no bus"
            await asyncio.sleep(0.1)
        async with open_runtime(project / "loom.toml") as rt:
            assert not rt.embedded
            async with await rt.subscribe("prices.tick") as ticks:
                assert (await ticks.get(timeout=30)).source == "prices"
            reply = await request_until_answered(rt, "hello.world", {"name": "Ada"})
            assert reply.data == {"greeting": "Hello, Ada!"} and reply.source == "greeter"
    finally:
        if supervisor.returncode is None:
            supervisor.send_signal(signal.SIGINT)
        try:
            output, _ = await asyncio.wait_for(supervisor.communicate(), 30)
        except TimeoutError:
            supervisor.kill()
            output, _ = await supervisor.communicate()
    assert supervisor.returncode == 0, output.decode()


async def request_until_answered(rt: Runtime, topic: str, data: object) -> Envelope:
    """Requests reach only agents already subscribed: ask again while a worker starts."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        try:
            return await rt.request(topic, data, timeout=1.0)
        except RequestTimeout:
            if asyncio.get_running_loop().time() > deadline:
                raise


def test_init_refuses_a_non_empty_folder_without_force(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    message = fails(tmp_path, "init")
    assert "is not empty (notes.txt)" in message and "--force" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]

    (tmp_path / "a-file").write_text("")
    assert "is a file" in fails(tmp_path, "init", "a-file")
    assert "bad project name" in fails(tmp_path, "init", "new", "--name", "two\nlines")


def test_init_force_adds_files_but_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("my readme\n")
    (tmp_path / "loom.toml").write_text("# my settings\n")
    result = loom(tmp_path, "init", "--force")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "README.md").read_text() == "my readme\n"
    assert (tmp_path / "loom.toml").read_text() == "# my settings\n"
    assert (tmp_path / "agents" / "greeter.py").is_file()
    assert (tmp_path / "notebooks" / "getting_started.ipynb").is_file()
    assert result.stdout.count("already there: kept as it was") == 2
    assert "cd " not in result.stdout  # created here: no folder to change to


# -- loom create agent ------------------------------------------------------------------


async def test_create_basic_agent_handles_its_events(project: Path) -> None:
    with project_imports(project):
        config = await asyncio.to_thread(create_agent, project, "echo-bot", "basic")
        module = agent_module(config, "echo-bot")
        assert config.agents["echo-bot"].module == "agents.echo_bot:EchoBotAgent"
        assert config.agents["echo-bot"].group is None
        async with open_runtime(project / "loom.toml") as rt:
            await rt.start(module.EchoBotAgent("echo-bot"))
            first = await rt.request("echo-bot.ping", {"x": 1}, timeout=WAIT)
            assert first.data == {
                "agent": "echo-bot",
                "topic": "echo-bot.ping",
                "handled": 1,
                "data": {"x": 1},
            }
            await rt.emit("echo-bot.note", "no reply expected")
            again = await rt.request("echo-bot.ping.deeper", None, timeout=WAIT)
            assert again.data["handled"] == 3  # one subscription: handled in order
            assert rt.agents["echo-bot"].statistics().errors == 0


async def test_create_producer_agent_emits_at_its_configured_rate(project: Path) -> None:
    with project_imports(project):
        config = await asyncio.to_thread(
            create_agent, project, "prices", "producer", "--group", "feeds",
            "--project", "proj", cwd=project.parent,
        )  # fmt: skip
        module = agent_module(config, "prices")
        assert config.agents["prices"].group == "feeds"
        assert config.agents["prices"].settings == {"topic": "prices.tick", "rate_hz": 1.0}
        toml = project / "loom.toml"
        toml.write_text(toml.read_text().replace("rate_hz = 1.0", "rate_hz = 50.0"))
        async with open_runtime(toml) as rt, await rt.subscribe("prices.tick") as ticks:
            await rt.start(module.PricesAgent("prices"))
            events = [await ticks.get(timeout=WAIT) for _ in range(5)]
            assert [e.data for e in events] == [{"n": n, "value": float(n)} for n in range(1, 6)]
            # the schedule read rate_hz: at the template's 1 Hz five ticks span 4 s at least
            assert (events[-1].ts - events[0].ts) / 1e9 < 2.0


async def test_create_tool_agent_serves_a_typed_tool(project: Path) -> None:
    with project_imports(project):
        config = await asyncio.to_thread(create_agent, project, "HTTPStats", "tool")
        module = agent_module(config, "HTTPStats")
        assert config.agents["HTTPStats"].module == "agents.http_stats:HttpStatsAgent"
        async with open_runtime(project / "loom.toml") as rt:
            await rt.start(module.HttpStatsAgent("HTTPStats"))
            summary = await rt.tool("HTTPStats.summarize", {"numbers": [1, 2, 4]})
            assert summary == {"count": 3, "mean": 2.33, "min": 1.0, "max": 4.0}
            with pytest.raises(ToolError, match="numbers"):
                await rt.tool("HTTPStats.summarize", {"numbers": []})


async def test_create_llm_agent_fails_clearly_without_llm_default_and_keeps_running(
    project: Path,
) -> None:
    with project_imports(project):
        config = await asyncio.to_thread(create_agent, project, "asker", "llm")
        module = agent_module(config, "asker")
        assert "system" in config.agents["asker"].settings
        async with open_runtime(project / "loom.toml") as rt:
            await rt.start(module.AskerAgent("asker"))
            for _ in range(2):  # the first failure does not stop it
                with pytest.raises(RemoteError, match=r"LLMError: no \[llm.default\]") as caught:
                    await rt.request("asker.ask", {"question": "hi"}, timeout=WAIT)
                assert "add [llm.default]" in str(caught.value)
            assert rt.status("asker") in ("running", "idle")
            assert rt.agents["asker"].statistics().errors == 2


def test_create_agent_keeps_the_files_line_endings(tmp_path: Path) -> None:
    (tmp_path / "loom.toml").write_bytes(b"# mine\r\n[runtime]\r\nidle_after = 2.0")
    result = loom(tmp_path, "create", "agent", "worker")
    assert result.returncode == 0, result.stderr
    raw = (tmp_path / "loom.toml").read_bytes()
    assert raw.startswith(b"# mine\r\n[runtime]\r\nidle_after = 2.0\r\n\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert load_config(tmp_path / "loom.toml").agents["worker"].module == (
        "agents.worker:WorkerAgent"
    )
    assert (tmp_path / "agents" / "__init__.py").is_file()  # a project without `loom init`


def test_create_agent_errors_are_clear_and_change_nothing(project: Path, tmp_path: Path) -> None:
    original = (project / "loom.toml").read_bytes()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    assert "not a Loom project" in fails(outside, "create", "agent", "x")
    assert "run `loom init` first or pass --project" in fails(
        project, "create", "agent", "x", "--project", str(outside)
    )
    assert "bad agent id 'bad name'" in fails(project, "create", "agent", "bad name")
    assert "bad group 'a b'" in fails(project, "create", "agent", "x", "--group", "a b")
    unknown = fails(project, "create", "agent", "x", "--template", "fancy")
    assert "unknown template 'fancy': use one of basic, llm, producer, tool" in unknown
    assert "[agents.greeter] is already declared" in fails(project, "create", "agent", "greeter")
    (project / "agents" / "extra.py").write_text("# mine\n")
    assert "extra.py already exists" in fails(project, "create", "agent", "extra")
    assert (project / "loom.toml").read_bytes() == original

    # an [agents] table TOML cannot extend: the file is put back as it was
    inline = b'agents = { other = { module = "agents.other:Other" } }\n'
    (outside / "loom.toml").write_bytes(inline)
    message = fails(outside, "create", "agent", "x")
    assert "adding [agents.x] at its end would make it invalid" in message
    assert "left as it was" in message
    assert (outside / "loom.toml").read_bytes() == inline
    assert not (outside / "agents").exists()
