"""The builder reads a project from its code: hand-written (the Market Analyst demo) or not."""

from __future__ import annotations

from pathlib import Path

from loom_studio.builder import read_project, read_source
from tests.conftest import REPO

DEMO = REPO / "demo" / "market_analyst"
SIX = {"data", "trend", "risk", "sentiment", "planner", "executor"}


def test_the_demo_is_drawn_with_its_six_agents_and_their_topics() -> None:
    model = read_project(DEMO)
    assert not model.problems
    agents = {agent.id: agent for agent in model.agents}
    assert {a for a, agent in agents.items() if not agent.observer} == SIX
    assert agents["terminal-view"].observer  # traced = False: it watches
    assert [e.topic for e in agents["data"].emissions] == ["market.price.*"]
    assert not agents["data"].emissions[0].static  # f"market.price.{symbol}"
    assert {s.pattern for s in agents["planner"].subscriptions} >= {
        "analysis.trend.*", "analysis.risk.*", "analysis.sentiment.*",
    }  # fmt: skip
    edges = {(e.source, e.target) for e in model.edges()}
    assert {
        ("data", "trend"), ("data", "risk"), ("data", "sentiment"), ("data", "executor"),
        ("trend", "planner"), ("risk", "planner"), ("sentiment", "planner"),
        ("planner", "executor"),
    } <= edges  # fmt: skip
    assert model.llms == ["deepseek"]


def test_what_cannot_be_read_statically_is_said_not_guessed() -> None:
    agents = {agent.id: agent for agent in read_project(DEMO).agents}
    # the executor's topic family comes from a dict at run time
    [unread] = agents["executor"].unread
    assert unread.what.startswith('ctx.emit(f"{_FAMILY[type(record)]}.{record.symbol}"')
    assert unread.reason == "the topic is computed at run time" and unread.line > 0
    assert not agents["executor"].emissions  # nothing drawn from it
    [tool] = agents["sentiment"].unread
    assert tool.what == "ctx.tool(settings.tool, ...)"


def test_a_declared_agent_takes_its_id_and_settings_from_loom_toml(tmp_path: Path) -> None:
    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "echo.py").write_text(
        "from loom_kernel import Agent, on_event\n\n"
        "class Echo(Agent):\n"
        '    @on_event("in.*", qos="batched")\n'
        "    async def handle(self, events, ctx):\n"
        '        await ctx.request("svc.ask", 1)\n'
    )
    (tmp_path / "loom.toml").write_text(
        '[agents.echo-1]\nmodule = "agents.echo:Echo"\ngroup = "io"\n\n[llm.gpt]\nmodel = "x"\n'
    )
    [agent] = read_project(tmp_path).agents
    assert (agent.id, agent.class_name, agent.module) == ("echo-1", "Echo", "agents.echo")
    assert agent.config["group"] == "io"
    assert [(s.pattern, s.qos) for s in agent.subscriptions] == [("in.*", "batched")]
    assert [(e.topic, e.kind, e.static) for e in agent.emissions] == [("svc.ask", "request", True)]


def test_a_file_that_does_not_parse_is_listed_and_the_rest_read(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("class (:\n")
    (tmp_path / "good.py").write_text(
        "from loom_kernel import Agent\n\nclass Good(Agent):\n    id = 'good'\n"
    )
    model = read_project(tmp_path)
    assert [agent.id for agent in model.agents] == ["good"]
    assert model.problems and model.problems[0].startswith("broken.py: not read")


def test_agents_derived_from_other_agents_of_the_project_are_agents() -> None:
    source = (
        "from loom_kernel import Agent, on_event\n\n"
        "class Base(Agent):\n    pass\n\n"
        "class PriceWatcher(Base):\n"
        '    @on_event("a.b")\n'
        "    async def on(self, event, ctx):\n"
        "        await ctx.emit(topic_for(event), 1)\n"
        "class NotAnAgent:\n    pass\n"
    )
    agents = {agent.class_name: agent for agent in read_source(source)}
    assert set(agents) == {"Base", "PriceWatcher"}
    assert agents["PriceWatcher"].id == "price-watcher"  # the kernel's default id
    assert agents["PriceWatcher"].unread[0].what == "ctx.emit(topic_for(event), ...)"
