"""Agent tools: schemas from type hints, argument checking, calls across the bus."""

from __future__ import annotations

from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field

from loom_kernel import Agent, Runtime, tool
from loom_kernel.capabilities.tools import ToolInfo, ToolSignature, check_arguments
from loom_kernel.errors import LoomError, ToolError, ToolTimeout

pytestmark = pytest.mark.timeout(30)


class Quote(BaseModel):
    symbol: str
    price: float


class Prices(Agent):
    @tool()
    async def latest(
        self,
        symbol: Annotated[str, Field(description="Ticker, e.g. AAPL")],
        limit: int = 3,
    ) -> list[float]:
        """The last prices of a symbol."""
        return [100.0 + i for i in range(limit)]

    @tool("prices.quote")
    async def quote(self, symbol: str) -> Quote:
        """A quote as a model."""
        return Quote(symbol=symbol, price=101.5)

    @tool()
    async def boom(self) -> None:
        raise RuntimeError("exploded on purpose")

    @tool()
    async def anything(self, **options: Any) -> dict[str, Any]:
        return options


def test_schema_comes_from_type_hints_and_docstring() -> None:
    agent = Prices("prices")
    signature = ToolSignature("latest", agent.latest)
    schema = signature.input_schema()
    assert schema["properties"]["symbol"] == {
        "description": "Ticker, e.g. AAPL",
        "title": "Symbol",
        "type": "string",
    }
    assert schema["properties"]["limit"]["default"] == 3
    assert schema["required"] == ["symbol"]
    assert signature.output_schema() == {"items": {"type": "number"}, "type": "array"}


def test_bind_coerces_and_fills_defaults() -> None:
    signature = ToolSignature("latest", Prices("prices").latest)
    assert signature.bind({"symbol": "AAPL"}) == {"symbol": "AAPL", "limit": 3}
    assert signature.bind({"symbol": "AAPL", "limit": "5"}) == {"symbol": "AAPL", "limit": 5}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ({}, "argument 'symbol' is missing"),
        ({"symbol": "AAPL", "limit": "many"}, "argument 'limit': Input should be a valid integer"),
        ({"symbol": "AAPL", "lmit": 2}, "unknown argument 'lmit' (it takes: symbol, limit)"),
        (["AAPL"], "arguments must be an object of named values, got list"),
    ],
)
def test_bad_arguments_name_the_field(args: Any, expected: str) -> None:
    signature = ToolSignature("latest", Prices("prices").latest)
    with pytest.raises(ToolError, match="tool 'latest'") as caught:
        signature.bind(args)
    assert expected in str(caught.value)


def test_var_keyword_tool_accepts_any_named_argument() -> None:
    signature = ToolSignature("anything", Prices("prices").anything)
    assert signature.bind({"a": 1, "b": [2]}) == {"a": 1, "b": [2]}


def test_positional_only_parameters_are_refused() -> None:
    async def odd(x: int, /) -> int:
        return x

    with pytest.raises(TypeError, match="must be passable by name"):
        ToolSignature("odd", odd)


def test_check_arguments_against_a_json_schema() -> None:
    info = ToolInfo(
        name="time.convert",
        description="",
        input_schema={
            "type": "object",
            "properties": {"tz": {"type": "string"}, "hours": {"type": "integer"}},
            "required": ["tz"],
        },
    )
    check_arguments(info, {"tz": "UTC", "hours": 2})
    with pytest.raises(ToolError, match="argument 'tz' is missing"):
        check_arguments(info, {"hours": 2})
    with pytest.raises(ToolError, match="argument 'hours': 'two' is not of type 'integer'"):
        check_arguments(info, {"tz": "UTC", "hours": "two"})


async def test_tool_called_by_another_agent_through_the_bus(rt: Runtime) -> None:
    await rt.start(Prices("prices"))
    assert await rt.tool("latest", {"symbol": "AAPL", "limit": 2}) == [100.0, 101.0]
    assert await rt.tool("prices.quote", {"symbol": "MSFT"}) == {"symbol": "MSFT", "price": 101.5}


async def test_wrong_arguments_come_back_as_tool_error_naming_the_field(rt: Runtime) -> None:
    await rt.start(Prices("prices"))
    with pytest.raises(ToolError, match="argument 'limit'") as caught:
        await rt.tool("latest", {"symbol": "AAPL", "limit": "lots"})
    assert "failed" not in str(caught.value)  # the remote ToolError comes back as it was
    # the agent keeps serving
    assert await rt.tool("latest", {"symbol": "AAPL", "limit": 1}) == [100.0]
    assert rt.status("prices") == "running"


async def test_tool_that_raises_reports_its_error(rt: Runtime) -> None:
    await rt.start(Prices("prices"))
    with pytest.raises(ToolError, match="tool 'boom' failed: RuntimeError: exploded on purpose"):
        await rt.tool("boom")
    assert rt.agents["prices"].errors == 1


async def test_unserved_tool_times_out_with_a_hint(rt: Runtime) -> None:
    with pytest.raises(ToolTimeout, match="loom tools") as caught:
        await rt.tool("nobody-serves-this", {}, timeout=0.2)
    assert isinstance(caught.value, TimeoutError)


async def test_args_must_be_a_dict(rt: Runtime) -> None:
    with pytest.raises(ToolError, match="args must be a dict"):
        await rt.tool("latest", ["AAPL"])  # type: ignore[arg-type]


async def test_tools_lists_agent_tools_with_schemas(rt: Runtime) -> None:
    await rt.start(Prices("prices"))
    listed = {info.name: info for info in await rt.tools(timeout=0.2)}
    assert set(listed) == {"anything", "boom", "latest", "prices.quote"}
    latest = listed["latest"]
    assert latest.kind == "agent"
    assert latest.provider == "agent:prices"
    assert latest.description == "The last prices of a symbol."
    assert latest.input_schema["required"] == ["symbol"]
    assert listed["prices.quote"].output_schema["properties"]["price"]["type"] == "number"


async def test_stopped_agent_tools_leave_the_list(rt: Runtime) -> None:
    await rt.start(Prices("prices"))
    await rt.stop("prices")
    assert await rt.tools(timeout=0.1) == []


async def test_starting_an_agent_with_tools_announces_them(rt: Runtime) -> None:
    sub = await rt.subscribe("loom.tools.changed")
    await rt.start(Prices("prices"))
    event = await sub.get(timeout=2)
    assert {item["name"] for item in event.data["tools"]} >= {"latest", "prices.quote"}


def test_tool_info_round_trips_through_a_dict() -> None:
    info = ToolInfo("a.b", "does b", {"type": "object"}, None, "mcp:a", "mcp", None, ("b",))
    assert ToolInfo.from_dict(info.to_dict()) == info


async def test_two_agents_of_one_process_cannot_serve_the_same_tool(rt: Runtime) -> None:
    await rt.start(Prices("prices"))
    with pytest.raises(LoomError, match="already serves here"):
        await rt.start(Prices("prices-2"))
    await rt.stop("prices")
    await rt.start(Prices("prices-2"))  # free again once the first one stopped


async def test_stopping_an_agent_announces_its_tools_are_gone(rt: Runtime) -> None:
    await rt.start(Prices("prices"))
    sub = await rt.subscribe("loom.tools.changed")
    await rt.stop("prices")
    # the start announcement may still be in flight: the last word is what counts
    event = await sub.get(timeout=2)
    while event.data["tools"]:
        event = await sub.get(timeout=2)
    assert event.data["process"] == rt.client.client_id
