"""Agents: what the decorators record and check, and how agent ids are chosen."""

from __future__ import annotations

import pytest

from loom_kernel import Agent, Runtime, TopicError, capability, on_event, tool

# -- @on_event -----------------------------------------------------------------------


def test_on_event_records_pattern_qos_and_method_name():
    class Watcher(Agent):
        @on_event("market.price.*", qos="realtime", mailbox_size=10)
        async def prices(self, event, ctx):
            pass

    (spec,) = Watcher("w").handlers
    assert (spec.pattern, spec.qos, spec.name, spec.mailbox_size) == (
        "market.price.*",
        "realtime",
        "prices",
        10,
    )


def test_on_event_defaults_to_reliable_qos():
    class Watcher(Agent):
        @on_event("market.news")
        async def news(self, event, ctx):
            pass

    assert Watcher("w").handlers[0].qos == "reliable"


@pytest.mark.parametrize(
    "pattern", ["", "market..price", ".market", "market.", "market.pri*", "market price"]
)
def test_on_event_rejects_a_bad_pattern_at_decoration_time(pattern):
    # The decorator factory itself raises: a class with a bad pattern never gets defined.
    with pytest.raises(TopicError):
        on_event(pattern)


def test_bad_pattern_fails_while_the_class_body_runs():
    with pytest.raises(TopicError, match="whole segment"):

        class Broken(Agent):
            @on_event("market.pri*")
            async def prices(self, event, ctx):
                pass


def test_on_event_rejects_an_unknown_qos_naming_the_valid_ones():
    with pytest.raises(ValueError, match="unknown qos 'fast'") as info:
        on_event("market.price.*", qos="fast")
    assert not isinstance(info.value, TopicError)
    for name in ("realtime", "reliable", "batched"):
        assert name in str(info.value)


def test_on_event_on_a_plain_function_raises_type_error_showing_the_async_signature():
    with pytest.raises(TypeError, match=r"@on_event needs an async function") as info:

        class Sync(Agent):
            @on_event("market.price.*")
            def prices(self, event, ctx):
                pass

    assert "async def prices(self, event, ctx)" in str(info.value)


def test_on_event_rejects_an_async_generator():
    with pytest.raises(TypeError, match="async function"):

        class Gen(Agent):
            @on_event("market.price.*")
            async def prices(self, event, ctx):
                yield event


def test_stacked_on_event_gives_one_method_several_patterns():
    class Both(Agent):
        @on_event("market.price.*")
        @on_event("market.news")
        async def anything(self, event, ctx):
            pass

    assert sorted(spec.pattern for spec in Both("b").handlers) == ["market.news", "market.price.*"]
    assert {spec.name for spec in Both("b").handlers} == {"anything"}


# -- @tool ---------------------------------------------------------------------------


def test_tool_name_defaults_to_the_method_name_and_description_to_its_docstring():
    class Prices(Agent):
        @tool()
        async def latest(self, symbol: str) -> float:
            """The latest price of a symbol."""
            return 1.0

    (spec,) = Prices("p").tools
    assert (spec.name, spec.method, spec.description) == (
        "latest",
        "latest",
        "The latest price of a symbol.",
    )


def test_tool_takes_an_explicit_name_and_description():
    class Search(Agent):
        @tool("web-search", description="Search the web")
        async def search(self, query: str) -> list[str]:
            return []

        @tool("prices.latest")
        async def latest(self) -> float:
            return 1.0

    names = {spec.name: spec for spec in Search("s").tools}
    assert set(names) == {"web-search", "prices.latest"}
    assert names["web-search"].description == "Search the web"
    assert names["web-search"].method == "search"


def test_capability_is_an_alias_of_tool():
    assert capability is tool

    class Calc(Agent):
        @capability("calc-add")
        async def add(self, a: int, b: int) -> int:
            return a + b

    assert [spec.name for spec in Calc("c").tools] == ["calc-add"]


@pytest.mark.parametrize("name", ["web search", "-search", "web..search", "search.", "a*b"])
def test_tool_rejects_a_bad_name_showing_good_ones(name):
    with pytest.raises(ValueError, match="bad tool name") as info:

        class Bad(Agent):
            @tool(name)
            async def search(self) -> None:
                pass

    assert "web-search" in str(info.value)


def test_tool_on_a_plain_function_raises_type_error():
    with pytest.raises(TypeError, match="@tool needs an async function"):

        class Sync(Agent):
            @tool("sync")
            def sync(self) -> None:
                pass


# -- inheritance ---------------------------------------------------------------------


class Base(Agent):
    @on_event("base.one")
    async def one(self, event, ctx):
        await ctx.emit("seen.base.one", event.data)

    @on_event("base.two")
    async def two(self, event, ctx):
        pass

    @tool("base-tool")
    async def helper(self) -> str:
        return "base"


def test_a_subclass_inherits_handlers_and_tools():
    class Child(Base):
        @on_event("child.three")
        async def three(self, event, ctx):
            pass

    patterns = sorted(spec.pattern for spec in Child("c").handlers)
    assert patterns == ["base.one", "base.two", "child.three"]
    assert [spec.name for spec in Child("c").tools] == ["base-tool"]


def test_overriding_with_the_decorator_replaces_the_base_handler():
    class Child(Base):
        @on_event("child.one")
        async def one(self, event, ctx):
            await ctx.emit("seen.child.one", event.data)

    patterns = sorted(spec.pattern for spec in Child("c").handlers)
    assert patterns == ["base.two", "child.one"]


def test_overriding_without_the_decorator_removes_the_handler_and_the_tool():
    class Child(Base):
        async def two(self, event, ctx):
            pass

        async def helper(self) -> str:
            return "child"

    assert [spec.pattern for spec in Child("c").handlers] == ["base.one"]
    assert Child("c").tools == []


async def test_an_inherited_handler_runs_on_the_subclass_instance(rt: Runtime):
    class Child(Base):
        @on_event("base.one")
        async def one(self, event, ctx):
            await ctx.emit("seen.child.one", event.data)

    seen = await rt.subscribe("seen.*")
    await rt.start(Child("child"))
    await rt.emit("base.one", 7)
    event = await seen.get(5)
    assert (event.topic, event.data, event.source) == ("seen.child.one", 7, "child")


# -- agent ids -----------------------------------------------------------------------


@pytest.mark.parametrize("agent_id", ["trend", "risk-1", "risk_2", "A9", "0day"])
def test_valid_agent_ids_are_kept(agent_id):
    assert Agent(agent_id).id == agent_id


@pytest.mark.parametrize(
    "agent_id", ["with space", "dot.ted", "-lead", "_lead", "star*", "x/y", "é", 42]
)
def test_a_bad_agent_id_raises_value_error_explaining_the_rule(agent_id):
    with pytest.raises(ValueError, match="bad agent id") as info:
        Agent(agent_id)
    assert "letters, digits" in str(info.value)


def test_default_id_is_the_class_name_in_kebab_case():
    class MarketDataAgent(Agent):
        pass

    class Planner(Agent):
        pass

    assert MarketDataAgent().id == "market-data-agent"
    assert Planner().id == "planner"


def test_default_id_keeps_acronyms_together():
    class LLMPlanner(Agent):
        pass

    class PlannerV2(Agent):
        pass

    assert LLMPlanner().id == "llm-planner"
    assert PlannerV2().id == "planner-v2"


def test_class_attribute_id_is_the_default_and_an_argument_wins():
    class Trend(Agent):
        id = "trend-follower"

    assert Trend().id == "trend-follower"
    assert Trend("trend-2").id == "trend-2"


def test_a_bad_class_attribute_id_fails_at_construction():
    class Bad(Agent):
        id = "bad id"

    with pytest.raises(ValueError, match="bad agent id 'bad id'"):
        Bad()


def test_repr_names_class_and_id():
    class Trend(Agent):
        pass

    assert repr(Trend("t1")) == "<Trend 't1'>"
