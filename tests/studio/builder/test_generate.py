"""Generate writes readable agents the builder reads back, and the kernel runs."""

from __future__ import annotations

import asyncio
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from loom_kernel import open_runtime
from loom_studio.builder import (
    TEMPLATES,
    AgentSpec,
    agent_table,
    generate,
    read_project,
    render,
    set_agent_table,
)
from tests.conftest import PYTHON

pytestmark = pytest.mark.timeout(60)

SPECS = {
    "producer": AgentSpec("ticker", "producer", emit="tick.now", interval=0.05),
    "transform": AgentSpec("doubler", "transform", subscribe="tick.*", emit="tick.done"),
    "llm": AgentSpec("writer", "llm", subscribe="ask.*", emit="answer.text", llm="gpt"),
    "tool": AgentSpec("caller", "tool", subscribe="job.*", emit="job.done", tool="add"),
    "sink": AgentSpec("logger", "sink", subscribe="tick.done", qos="realtime"),
    "responder": AgentSpec("echo", "responder", subscribe="echo.ask"),
    "fan_in": AgentSpec(
        "joiner", "fan_in", subscribe="go.*", emit="joined.all", gather=("a.*", "b.*")
    ),
    "bidder": AgentSpec("worker", "bidder", subscribe="jobs.render"),
}


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "loom.toml").write_text(
        "# my project: keep this comment\n[runtime]\nheartbeat_interval = 0.2  # fast\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m == "agents" or m.startswith("agents.")]:
        del sys.modules[name]


def test_every_template_has_a_spec_here() -> None:
    assert set(SPECS) == set(TEMPLATES)


@pytest.mark.parametrize("template", sorted(SPECS))
def test_generate_then_read_back_gives_the_same_agent(project: Path, template: str) -> None:
    spec = SPECS[template]
    result = generate(project, [spec])
    assert result.written == [f"agents/{spec.id}.py"] and result.declared == [spec.id]
    [agent] = read_project(project).agents
    assert (agent.id, agent.config["module"]) == (
        spec.id, f"agents.{spec.id}:{spec.id.capitalize()}",
    )  # fmt: skip
    handled = [(s.pattern, s.qos) for s in agent.subscriptions if s.kind == "on_event"]
    assert handled == ([(spec.subscribe, spec.qos)] if spec.subscribe else [])
    gathered = [s.pattern for s in agent.subscriptions if s.kind == "fan_in"]
    assert gathered == list(spec.gather)
    assert [e.topic for e in agent.emissions] == ([spec.emit] if spec.emit else [])
    assert [t.name for t in agent.tool_calls] == ([spec.tool] if spec.tool else [])
    assert not agent.unread
    # formatted and clean as ruff has it
    file = project / "agents" / f"{spec.id}.py"
    for check in (["format", "--check"], ["check", "--select", "E,F,W,I,UP,B"]):
        done = subprocess.run(
            [PYTHON, "-m", "ruff", *check, str(file)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_generating_twice_changes_nothing_and_keeps_loom_toml_comments(project: Path) -> None:
    specs = list(SPECS.values())
    first = generate(project, specs)
    assert len(first.written) == len(specs) and first.changed
    files = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    second = generate(project, specs)
    assert not second.changed and len(second.kept) == len(specs)
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == files
    toml = (project / "loom.toml").read_text()
    assert toml.startswith("# my project: keep this comment\n[runtime]\n")
    assert "heartbeat_interval = 0.2  # fast" in toml


def test_a_module_that_exists_is_never_overwritten(project: Path) -> None:
    (project / "agents").mkdir()
    mine = "# my own ticker, edited by hand\n"
    (project / "agents" / "ticker.py").write_text(mine)
    result = generate(project, [SPECS["producer"]])
    assert result.kept == ["agents/ticker.py"] and not result.written
    assert (project / "agents" / "ticker.py").read_text() == mine


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (AgentSpec("Bad Id", "sink", subscribe="a.b"), "agent id 'Bad Id'"),
        (AgentSpec("x", "nope"), "no template 'nope': use one of producer"),
        (AgentSpec("x", "sink", subscribe="a..b"), "x: the pattern it handles, 'a..b'"),
        (AgentSpec("x", "transform", subscribe="a.*"), "emits on a topic: give one"),
        (AgentSpec("x", "transform", subscribe="a.*", emit="b.*"), "emitted topic 'b.*'"),
        (AgentSpec("x", "llm", subscribe="a.*", emit="b.c"), "name the LLM"),
    ],
)
def test_an_incomplete_spec_says_what_to_fix(spec: AgentSpec, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("*", r"\*").replace(".", r"\.")):
        render(spec)


def test_a_bad_loom_toml_is_reported_and_left_alone(project: Path) -> None:
    (project / "loom.toml").write_text("[runtime\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        generate(project, [SPECS["sink"]])
    assert (project / "loom.toml").read_text() == "[runtime\n"


async def test_generated_agents_run_on_the_bus(project: Path) -> None:
    specs = [SPECS["producer"], SPECS["transform"], SPECS["responder"]]
    generate(project, specs)
    classes = [
        getattr(importlib.import_module(f"agents.{spec.id}"), spec.id.capitalize())
        for spec in specs
    ]
    async with open_runtime(project / "loom.toml") as rt:
        done = await rt.subscribe("tick.done")
        await rt.start(*(cls() for cls in classes))
        event = await asyncio.wait_for(done.get(), 10)
        assert event.data["n"] >= 1 and event.source == "doubler"
        reply = await rt.request("echo.ask", {"hi": 1}, timeout=5)
        assert reply.data == {"echo": {"hi": 1}}


def test_an_agents_loom_toml_table_is_edited_in_place_and_checked(project: Path) -> None:
    generate(project, [SPECS["sink"]])
    assert agent_table(project, "logger") == 'module = "agents.logger:Logger"\n'
    set_agent_table(project, "logger", 'module = "agents.logger:Logger"\ngroup = "io"\n')
    toml = (project / "loom.toml").read_text()
    assert toml.startswith("# my project: keep this comment\n")
    assert read_project(project).agents[0].config["group"] == "io"
    with pytest.raises(ValueError, match=r"module = 3: a quoted string is expected"):
        set_agent_table(project, "logger", "module = 3\n")
    assert (project / "loom.toml").read_text() == toml  # refused: nothing written
    with pytest.raises(ValueError, match="not valid TOML"):
        set_agent_table(project, "logger", "module = \n")
