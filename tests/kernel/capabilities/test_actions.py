"""The action broker over a fake transport: agent tools across processes, no sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from loom_kernel import Agent, ToolError, ToolTimeout, tool
from loom_kernel.agents import AgentRunner
from loom_kernel.capabilities import ActionBroker
from tests.support.fake_transport import Hub
from tests.support.seams import make_context

pytestmark = pytest.mark.timeout(10)


class Quotes(Agent):
    @tool("quote")
    async def quote(self, symbol: str) -> float:
        """The last price of a symbol."""
        if symbol == "ERR":
            raise ToolError("no such symbol 'ERR'")
        return 101.5


async def serving_process(hub: Hub, folder: Path) -> tuple[AgentRunner, ActionBroker]:
    """Another process: an agent serving a tool, and its broker answering tool queries."""
    runner = AgentRunner(Quotes("quotes"), make_context(hub.transport(), "quotes", folder))
    await runner.start()
    broker = ActionBroker({}, folder, local_tools=lambda: runner.tools)
    await broker.start(make_context(runner.ctx.transport, "proc-b", folder).endpoint)
    return runner, broker


async def test_a_tool_in_another_process_is_called_by_name(tmp_path: Path) -> None:
    hub = Hub()
    runner, remote = await serving_process(hub, tmp_path)
    caller = make_context(hub.transport(), "planner", tmp_path)
    broker = ActionBroker({}, tmp_path)
    assert await broker.call(caller.endpoint, "quote", {"symbol": "AAPL"}) == 101.5
    with pytest.raises(ToolError, match="no such symbol 'ERR'"):
        await broker.call(caller.endpoint, "quote", {"symbol": "ERR"})
    stats = {s.name: s for s in broker.statistics()}
    assert (stats["quote"].calls, stats["quote"].errors) == (2, 1)
    await remote.aclose()
    await runner.stop()


async def test_tools_lists_what_every_process_serves(tmp_path: Path) -> None:
    hub = Hub()
    runner, remote = await serving_process(hub, tmp_path)
    caller = make_context(hub.transport(), "planner", tmp_path)
    broker = ActionBroker({}, tmp_path)
    await broker.start(caller.endpoint)
    listed = await broker.tools(caller.endpoint, timeout=0.2, mcp=False)
    assert [(info.name, info.description) for info in listed] == [
        ("quote", "The last price of a symbol.")
    ]
    assert listed[0].input_schema["required"] == ["symbol"]
    await broker.aclose()
    await remote.aclose()
    await runner.stop()


async def test_a_tool_nobody_serves_times_out_saying_what_to_do(tmp_path: Path) -> None:
    caller = make_context(Hub().transport(), "planner", tmp_path)
    with pytest.raises(ToolTimeout, match="`loom tools` lists what is callable"):
        await ActionBroker({}, tmp_path).call(caller.endpoint, "nothing", {}, timeout=0.05)


async def test_bad_names_and_arguments_are_tool_errors(tmp_path: Path) -> None:
    caller = make_context(Hub().transport(), "planner", tmp_path)
    broker = ActionBroker({}, tmp_path)
    with pytest.raises(ToolError, match="a tool name is a non-empty str"):
        await broker.call(caller.endpoint, "", {})
    with pytest.raises(ToolError, match="args must be a dict"):
        await broker.call(caller.endpoint, "quote", ["AAPL"])  # type: ignore[arg-type]
