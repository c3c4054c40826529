"""The MCP bridge in process: what ``loom mcp serve`` serves, without a client."""

from __future__ import annotations

from pathlib import Path

import pytest

from loom_kernel import Agent, Runtime, ToolError, open_runtime, tool
from loom_kernel.config import parse_config
from loom_kernel.ops.mcp_bridge import ToolBridge

pytestmark = pytest.mark.timeout(60)

TIME_SERVER = {"command": "python", "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}


class Calculator(Agent):
    @tool("add")
    async def add(self, a: int, b: int = 0) -> int:
        """Add two integers."""
        return a + b

    @tool("divide")
    async def divide(self, a: float, b: float) -> float:
        return a / b


@pytest.fixture
async def rt_with_time(project: Path):
    config = parse_config({"mcp": {"time": TIME_SERVER}}, path=project / "loom.toml")
    async with open_runtime(config) as rt:
        await rt.start(Calculator("calculator"))
        yield rt


async def test_an_agent_tool_is_called_without_starting_unrelated_mcp_servers(
    rt_with_time: Runtime,
) -> None:
    bridge = ToolBridge(rt_with_time)
    assert sorted(await bridge.start()) == ["add", "divide"]
    assert await bridge.call("add", {"a": 2, "b": 3}) == 5
    assert rt_with_time.actions.servers["time"].state == "stopped"


async def test_an_unknown_tool_fails_at_once_with_the_closest_names(rt: Runtime) -> None:
    await rt.start(Calculator("calculator"))
    bridge = ToolBridge(rt)
    await bridge.start()
    with pytest.raises(ToolError, match=r"no tool 'ad' .*did you mean 'add'\? tools: add, divide"):
        await bridge.call("ad", {"a": 1})


async def test_bad_arguments_are_the_clients_error_not_the_agents(rt: Runtime) -> None:
    await rt.start(Calculator("calculator"))
    bridge = ToolBridge(rt)
    await bridge.start()
    with pytest.raises(ToolError, match=r"argument 'a' is missing \(it takes: a, b\)"):
        await bridge.call("add", {"b": 1})
    with pytest.raises(ToolError, match="argument 'a': 'x' is not of type 'integer'"):
        await bridge.call("add", {"a": "x"})
    runner = rt.agents["calculator"]
    assert (runner.errors, runner.handled) == (0, 0)  # the agent never saw them


async def test_a_bad_argument_that_reaches_an_agent_is_not_counted_against_it(
    rt: Runtime,
) -> None:
    await rt.start(Calculator("calculator"))
    with pytest.raises(ToolError, match="argument 'a'"):
        await rt.tool("add", {"a": "x"})  # ctx.tool sends it on: the agent checks and answers
    runner = rt.agents["calculator"]
    assert runner.errors == 0 and runner.last_error is None


async def test_a_tool_that_fails_is_an_error_result(rt: Runtime) -> None:
    await rt.start(Calculator("calculator"))
    bridge = ToolBridge(rt)
    with pytest.raises(ToolError, match="ZeroDivisionError"):
        await bridge.call("divide", {"a": 1, "b": 0})


async def test_with_mcp_serves_the_mcp_servers_tools_too(rt_with_time: Runtime) -> None:
    listed = await ToolBridge(rt_with_time, with_mcp=True).start()
    assert {"add", "time.get_current_time", "time.convert_time"} <= set(listed)
