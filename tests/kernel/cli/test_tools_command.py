"""`loom tools` and `loom mcp serve`, run as real commands against a real bus."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest

from loom_kernel import Agent, Runtime, tool
from tests.conftest import PYTHON, REPO, python_env

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]

TIME_SERVER = (
    '[mcp.time]\ncommand = "python"\nargs = ["-m", "mcp_server_time", "--local-timezone", "UTC"]\n'
)


class Calculator(Agent):
    @tool()
    async def add(self, a: int, b: int = 0) -> int:
        """Add two integers."""
        return a + b

    @tool()
    async def divide(self, a: float, b: float) -> float:
        """Divide a by b."""
        return a / b


async def loom(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `loom ARGS` in the project folder without blocking the test's event loop."""
    return await asyncio.to_thread(
        subprocess.run,
        [PYTHON, "-m", "loom_kernel.cli.app", *args],
        cwd=project,
        env=python_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_tools_lists_agents_on_the_bus_and_mcp_servers(project: Path, rt: Runtime) -> None:
    (project / "loom.toml").write_text(
        (project / "loom.toml").read_text() + TIME_SERVER, encoding="utf-8"
    )
    await rt.start(Calculator("calculator"))
    result = await loom(project, "tools", "--json")
    assert result.returncode == 0, result.stderr
    listed = {item["name"]: item for item in json.loads(result.stdout)}
    assert listed["add"]["provider"] == "agent:calculator"
    assert listed["add"]["input_schema"]["required"] == ["a"]
    assert listed["time.get_current_time"]["aliases"] == ["get_current_time"]

    table = await loom(project, "tools")
    assert table.returncode == 0, table.stderr
    assert "add" in table.stdout and "time.convert_time" in table.stdout

    detail = await loom(project, "tools", "get_current_time")
    assert detail.returncode == 0, detail.stderr
    assert "time.get_current_time" in detail.stdout and '"timezone"' in detail.stdout


async def test_tools_without_a_running_bus_lists_mcp_servers_only(project: Path) -> None:
    (project / "loom.toml").write_text(TIME_SERVER, encoding="utf-8")
    result = await loom(project, "tools", "--json")
    assert result.returncode == 0, result.stderr
    names = {item["name"] for item in json.loads(result.stdout)}
    assert names == {"time.get_current_time", "time.convert_time"}
    assert not (project / ".loom" / "bus.json").exists()  # looking started no bus


async def test_tools_without_a_running_bus_lists_sandboxed_tools(project: Path) -> None:
    wasm = REPO / "examples" / "wasm_tool" / "word_count.wasm"
    (project / "loom.toml").write_text(
        f'[tools.word_count]\nsandbox = "wasi"\nmodule = "{wasm}"\ndescription = "Counts."\n'
    )
    result = await loom(project, "tools", "--json", "--no-mcp")
    assert result.returncode == 0, result.stderr
    [listed] = json.loads(result.stdout)
    assert (listed["name"], listed["kind"]) == ("word_count", "wasi")
    assert listed["provider"] == f"wasi:{wasm}"


async def test_tools_unknown_name_is_a_clear_error(project: Path) -> None:
    result = await loom(project, "tools", "nope", "--no-mcp")
    assert result.returncode == 1
    assert "no tool 'nope'" in result.stderr


async def test_mcp_serve_exposes_bus_tools_to_an_mcp_client(project: Path, rt: Runtime) -> None:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    await rt.start(Calculator("calculator"))
    params = StdioServerParameters(
        command=PYTHON,
        args=["-m", "loom_kernel.cli.app", "mcp", "serve"],
        cwd=project,
        env={"PYTHONPATH": str(REPO)},
    )
    with (project / "bridge.log").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            listing = await client.list_tools()
            tools = {item.name: item for item in listing.tools}
            assert set(tools) == {"add", "divide"}
            assert tools["add"].description == "Add two integers."
            assert tools["add"].input_schema["required"] == ["a"]

            result = await client.call_tool("add", {"a": 2, "b": 3})
            assert not result.is_error
            assert result.structured_content == {"result": 5}

            failed = await client.call_tool("divide", {"a": 1, "b": 0})
            assert failed.is_error
            assert "ZeroDivisionError" in failed.content[0].text

            wrong = await client.call_tool("add", {"a": "x"})
            assert wrong.is_error
            assert "argument 'a'" in wrong.content[0].text
