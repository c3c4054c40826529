"""MCP servers from loom.toml: real servers over stdio and streamable HTTP."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from loom_kernel import Agent, Runtime, on_event, open_runtime
from loom_kernel.config import parse_config
from loom_kernel.errors import ConfigError, ToolError, ToolTimeout
from tests.conftest import REPO, free_port

pytestmark = [pytest.mark.timeout(60), pytest.mark.multiprocess]

TIME_SERVER = {
    "command": "python",
    "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"],
}
TEST_SERVER = {
    "command": "python",
    "args": ["-m", "tests.support.mcp_test_server"],
    "cwd": str(REPO),
    "timeout_sec": 1.5,
}


async def open_with(project: Path, mcp: dict[str, Any]) -> Runtime:
    config = parse_config(
        {"runtime": {"heartbeat_interval": 0.2}, "mcp": mcp}, path=project / "loom.toml"
    )
    return await open_runtime(config)


@pytest.fixture
async def mcp_rt(project: Path) -> AsyncIterator[Runtime]:
    rt = await open_with(project, {"time": TIME_SERVER, "t": TEST_SERVER})
    try:
        yield rt
    finally:
        await rt.aclose()


async def test_contract_time_server_over_stdio(mcp_rt: Runtime) -> None:
    result = await mcp_rt.tool("time.get_current_time", {"timezone": "UTC"})
    assert result["timezone"] == "UTC"
    assert result["datetime"].endswith("+00:00")


async def test_structured_results_and_plain_text(mcp_rt: Runtime) -> None:
    assert await mcp_rt.tool("t.add", {"a": 2, "b": 3}) == {"total": 5, "terms": [2, 3]}
    assert await mcp_rt.tool("t.echo", {"text": "hello"}) == "hello"
    assert await mcp_rt.tool("t.pid") > 0  # {"result": n} unwrapped


async def test_servers_start_lazily(mcp_rt: Runtime) -> None:
    servers = mcp_rt.actions.servers
    assert {name: s.state for name, s in servers.items()} == {"time": "stopped", "t": "stopped"}
    await mcp_rt.tool("t.echo", {"text": "x"})
    assert servers["t"].state == "running"
    assert servers["time"].state == "stopped"


async def test_bare_name_reaches_the_only_server_with_that_tool(mcp_rt: Runtime) -> None:
    result = await mcp_rt.tool("get_current_time", {"timezone": "Europe/Paris"})
    assert result["timezone"] == "Europe/Paris"


async def test_is_error_result_becomes_tool_error(mcp_rt: Runtime) -> None:
    with pytest.raises(ToolError, match=r"tool time.get_current_time failed: .*Invalid timezone"):
        await mcp_rt.tool("time.get_current_time", {"timezone": "Mars/Olympus"})
    with pytest.raises(ToolError, match=r"tool t.fail failed"):
        await mcp_rt.tool("t.fail")


async def test_wrong_argument_type_names_the_field(mcp_rt: Runtime) -> None:
    with pytest.raises(ToolError, match=r"argument 'a': 'two' is not of type 'integer'"):
        await mcp_rt.tool("t.add", {"a": "two", "b": 1})
    with pytest.raises(ToolError, match=r"argument 'timezone' is missing"):
        await mcp_rt.tool("time.get_current_time", {})


async def test_unknown_tool_lists_what_the_server_has(mcp_rt: Runtime) -> None:
    with pytest.raises(ToolError, match=r"has no tool 'nope' \(it has: add, crash, echo"):
        await mcp_rt.tool("t.nope")


async def test_hung_call_times_out_and_the_server_keeps_serving(mcp_rt: Runtime) -> None:
    with pytest.raises(ToolTimeout, match=r"did not answer within 1.5 s"):
        await mcp_rt.tool("t.hang", {"seconds": 30})
    with pytest.raises(ToolTimeout, match=r"within 0.3 s"):
        await mcp_rt.tool("t.hang", {"seconds": 30}, timeout=0.3)
    assert await mcp_rt.tool("t.echo", {"text": "still here"}) == "still here"


async def test_crash_mid_call_is_reported_and_the_server_restarts(mcp_rt: Runtime) -> None:
    first = await mcp_rt.tool("t.pid")
    with pytest.raises(ToolError, match=r"exited during the call to 'crash'.*crashing on purpose"):
        await mcp_rt.tool("t.crash")
    second = await mcp_rt.tool("t.pid")
    assert second != first
    stats = mcp_rt.actions.servers["t"].statistics()
    assert stats.restarts == 1
    assert stats.state == "running"


async def test_a_server_that_keeps_crashing_is_given_up(project: Path) -> None:
    rt = await open_with(project, {"t": {**TEST_SERVER, "max_restarts": 1}})
    try:
        for _ in range(2):
            with pytest.raises(ToolError, match=r"exited during the call"):
                await rt.tool("t.crash")
        with pytest.raises(ToolError, match=r"given up for now"):
            await rt.tool("t.echo", {"text": "x"})
    finally:
        await rt.aclose()


async def test_missing_command_says_how_to_fix_it(project: Path) -> None:
    rt = await open_with(project, {"x": {"command": "no-such-mcp-server-binary"}})
    try:
        with pytest.raises(
            ToolError,
            match=r"command 'no-such-mcp-server-binary' not found: install it or fix "
            r"\[mcp.x\].command",
        ):
            await rt.tool("x.anything")
    finally:
        await rt.aclose()


async def test_server_that_dies_at_start_shows_its_stderr(project: Path) -> None:
    rt = await open_with(
        project,
        {"bad": {"command": "python", "args": ["-c", "import sys; sys.exit('no config found')"]}},
    )
    try:
        with pytest.raises(ToolError, match=r"failed to start.*no config found"):
            await rt.tool("bad.anything")
    finally:
        await rt.aclose()


def test_server_needs_exactly_one_transport() -> None:
    with pytest.raises(ConfigError, match=r"set exactly one of command"):
        parse_config({"mcp": {"x": {"args": ["-m", "y"]}}})
    with pytest.raises(ConfigError, match=r"set exactly one of command"):
        parse_config({"mcp": {"x": {"command": "y", "url": "http://127.0.0.1:1/mcp"}}})


async def test_tools_lists_mcp_tools_qualified_with_aliases(mcp_rt: Runtime) -> None:
    listed = {info.name: info for info in await mcp_rt.tools(timeout=0.1)}
    current = listed["time.get_current_time"]
    assert current.kind == "mcp"
    assert current.provider == "mcp:time"
    assert current.aliases == ("get_current_time",)
    assert current.input_schema["required"] == ["timezone"]
    assert current.output_schema is not None
    assert {"t.add", "t.crash", "t.echo", "t.fail", "t.hang", "t.pid"} <= set(listed)


async def test_colliding_tool_names_need_the_server_name(project: Path) -> None:
    rt = await open_with(project, {"one": TEST_SERVER, "two": TEST_SERVER})
    try:
        with pytest.raises(ToolError, match=r"'echo' is ambiguous.*call one.echo, two.echo"):
            await rt.tool("echo", {"text": "x"})
        assert await rt.tool("two.echo", {"text": "x"}) == "x"
        listed = {info.name: info for info in await rt.tools(timeout=0.1)}
        assert listed["one.echo"].aliases == ()
    finally:
        await rt.aclose()


async def test_agent_tool_wins_over_a_bare_mcp_name(mcp_rt: Runtime) -> None:
    from loom_kernel import tool

    class LocalEcho(Agent):
        @tool()
        async def echo(self, text: str) -> str:
            return f"local {text}"

    await mcp_rt.start(LocalEcho("local-echo"))
    assert await mcp_rt.tool("echo", {"text": "x"}) == "local x"
    assert await mcp_rt.tool("t.echo", {"text": "x"}) == "x"


async def test_agent_handler_calls_mcp_tool_and_survives_its_failure(mcp_rt: Runtime) -> None:
    class Clock(Agent):
        @on_event("clock.ask")
        async def ask(self, event, ctx):
            zone = event.data["tz"]
            await ctx.reply(event, await ctx.tool("time.get_current_time", {"timezone": zone}))

    await mcp_rt.start(Clock("clock"))
    with pytest.raises(Exception, match=r"Invalid timezone"):
        await mcp_rt.request("clock.ask", {"tz": "Nowhere/Here"}, timeout=10)
    reply = await mcp_rt.request("clock.ask", {"tz": "UTC"}, timeout=10)
    assert reply.data["timezone"] == "UTC"
    assert mcp_rt.status("clock") == "running"


# -- streamable HTTP ------------------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.mcp_test_server", "--http", str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/mcp", proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the MCP HTTP server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the MCP HTTP server did not listen in time")


async def test_streamable_http_server(project: Path, http_server) -> None:
    url, proc = http_server
    rt = await open_with(project, {"h": {"url": url, "timeout_sec": 1}})
    try:
        assert await rt.tool("h.add", {"a": 20, "b": 22}) == {"total": 42, "terms": [20, 22]}
        with pytest.raises(ToolTimeout):
            await rt.tool("h.hang", {"seconds": 10})
        assert await rt.tool("h.echo", {"text": "after timeout"}) == "after timeout"
        proc.kill()
        proc.wait(timeout=10)
        with pytest.raises(ToolError, match=r"(stopped answering|cannot reach)"):
            await rt.tool("h.echo", {"text": "x"})
        with pytest.raises(ToolError, match=r"cannot reach MCP server 'h' at http.*is it running"):
            await rt.tool("h.echo", {"text": "x"})
    finally:
        await rt.aclose()


async def test_closing_the_runtime_stops_stdio_servers(project: Path) -> None:
    rt = await open_with(project, {"t": TEST_SERVER})
    pid = await rt.tool("t.pid")
    await rt.aclose()
    for _ in range(100):
        if not _alive(pid):
            break
        await asyncio.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


async def test_env_values_take_secrets_from_the_environment(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOM_TEST_TOKEN", "s3cret")
    monkeypatch.delenv("LOOM_TEST_MISSING", raising=False)
    env = {"TOKEN": "Bearer ${LOOM_TEST_TOKEN}", "PLAIN": "as is"}
    rt = await open_with(project, {"t": {**TEST_SERVER, "env": env}})
    try:
        assert await rt.tool("t.getenv", {"name": "TOKEN"}) == "Bearer s3cret"
        assert await rt.tool("t.getenv", {"name": "PLAIN"}) == "as is"
    finally:
        await rt.aclose()
    rt = await open_with(project, {"t": {**TEST_SERVER, "env": {"X": "${LOOM_TEST_MISSING}"}}})
    try:
        with pytest.raises(ToolError, match=r"\[mcp.t\].env.X uses \$\{LOOM_TEST_MISSING\}"):
            await rt.tool("t.echo", {"text": "x"})
    finally:
        await rt.aclose()
