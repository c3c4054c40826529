"""`loom mcp serve` driven by third-party MCP clients: the MCP Inspector's CLI (npm) and
the MCP Python SDK's client, against agents running under a real `loom run`."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PYTHON, python_env, wait_until

INSPECTOR = Path(PYTHON).parent.parent / "npm" / "node_modules" / ".bin" / "mcp-inspector"
LOOM = Path(PYTHON).with_name("loom")
pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(180)]

AGENT = '''
from loom_kernel import Agent, tool

class Calculator(Agent):
    @tool("add")
    async def add(self, a: int, b: int = 0) -> int:
        """Add two integers."""
        return a + b
'''
TOML = """
[runtime]
heartbeat_interval = 0.3

[mcp.time]
command = "python"
args = ["-m", "mcp_server_time", "--local-timezone", "UTC"]

[agents.calc]
module = "agents.calc:Calculator"
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A project whose agent serves `add`, running under `loom run` for the module."""
    folder = tmp_path_factory.mktemp("mcp-project")
    (folder / "agents").mkdir()
    (folder / "agents" / "__init__.py").write_text("")
    (folder / "agents" / "calc.py").write_text(AGENT)
    (folder / "loom.toml").write_text(TOML)
    run = subprocess.Popen(
        [str(LOOM), "run"], cwd=folder, env=python_env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "add" not in tools_listed(folder):
            assert time.monotonic() < deadline, "the agent did not come up under `loom run`"
            time.sleep(0.5)
        yield folder
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=30)


def inspector(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not INSPECTOR.exists():
        pytest.skip("the MCP Inspector is not installed: `make mcp-inspector`")
    return subprocess.run(
        [str(INSPECTOR), "--cli", "--cwd", str(project), str(LOOM), "mcp", "serve", *args],
        cwd=project, env=python_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def tools_listed(project: Path) -> list[str]:
    done = subprocess.run(
        [str(LOOM), "tools", "--json"], cwd=project, env=python_env(),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return (
        [item["name"] for item in json.loads(done.stdout or "[]")] if done.returncode == 0 else []
    )


def test_the_inspector_lists_the_agents_tools(project: Path) -> None:
    done = inspector(project, "--method", "tools/list")
    assert done.returncode == 0, done.stderr
    [add] = json.loads(done.stdout)["tools"]
    assert (add["name"], add["description"]) == ("add", "Add two integers.")
    assert add["inputSchema"]["required"] == ["a"]
    # the server says where it is and what it found, on stderr
    assert f"project {project}" in done.stderr
    assert "joined; 1 tool(s): add" in done.stderr


def test_the_inspector_calls_an_agent_tool(project: Path) -> None:
    done = inspector(
        project, "--method", "tools/call", "--tool-name", "add", "--tool-arg", "a=2", "b=3"
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["isError"] is False and result["structuredContent"] == {"result": 5}


def test_an_unknown_tool_is_refused(project: Path) -> None:
    done = inspector(project, "--method", "tools/call", "--tool-name", "ad", "--tool-arg", "a=1")
    assert done.returncode != 0
    assert "'ad' not found" in done.stdout + done.stderr


def test_from_a_folder_that_is_no_project_it_says_so(tmp_path: Path) -> None:
    done = inspector(tmp_path, "--method", "tools/list")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tools"] == []
    assert "not in a Loom project" in done.stderr
    assert "no agent on this bus serves a tool yet" in done.stderr


async def test_one_trace_from_the_mcp_client_to_the_agent(project: Path) -> None:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client
    from opentelemetry.sdk.trace import TracerProvider

    from loom_kernel import SpanStore

    params = StdioServerParameters(
        command=str(LOOM), args=["mcp", "serve"], cwd=project, env=python_env()
    )
    # the client's own tracing (any OpenTelemetry SDK): the MCP SDK sends its context in _meta
    tracer = TracerProvider().get_tracer("the-mcp-client")
    with (project / "bridge.log").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            with tracer.start_as_current_span("client asks") as span:
                trace_id = f"{span.get_span_context().trace_id:032x}"
                result = await client.call_tool("add", {"a": 20, "b": 22})
            assert result.structured_content == {"result": 42}
            failed = await client.call_tool("add", {"a": "x"})
            assert failed.is_error
    store = SpanStore(project / ".loom" / "traces.db")
    try:
        await wait_until(
            lambda: (
                {"tools/call add", "tool add", "serve add"}
                <= {s.name for s in store.trace(trace_id)}
            ),
            20,
        )
        spans = {s.name: s for s in store.trace(trace_id)}
        # the failed call's MCP span says so (its status comes from the result)
        await wait_until(lambda: bool(store.query(name="tools/call add", status="error")), 20)
    finally:
        store.close()
    # the client's span → the MCP SDK's server span → Loom's tool call → the agent's handler
    assert spans["tool add"].parent_id == spans["tools/call add"].span_id
    assert spans["serve add"].agent == "calc"
