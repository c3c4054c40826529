"""`loom mcp serve` as an MCP client sees it: start, tools/list, tools/call, an unknown tool.

    python benchmarks/mcp_serve.py [--calls 50] [--json]

A temporary project whose agent ``calc`` serves the tool ``add`` runs under ``loom run``
(with an ``[mcp.time]`` server declared, which a call of ``add`` must not start). The MCP
Python SDK's client starts ``loom mcp serve`` over stdio and measures: the session's start
(process up, joined, initialized), the first ``tools/list``, the first ``tools/call`` of a
new session, the next ``--calls`` calls (p50/p99), and a call of a tool nobody serves.
Baseline, same run: the same tool called from a Loom process on the bus (``rt.tool``),
so ``mcp_over_direct`` is what the MCP hop (stdio, JSON-RPC, the bridge) costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from loom_kernel import open_runtime
from loom_kernel.stats import percentile

AGENT = '''
from loom_kernel import Agent, tool

class Calculator(Agent):
    @tool("add")
    async def add(self, a: int, b: int = 0) -> int:
        """Add two integers."""
        return a + b
'''
TOML = """
[mcp.time]
command = "python"
args = ["-m", "mcp_server_time", "--local-timezone", "UTC"]

[agents.calc]
module = "agents.calc:Calculator"
"""
LOOM = str(Path(sys.executable).with_name("loom"))


def make_project() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="loom-mcp-bench-"))
    (folder / "agents").mkdir()
    (folder / "agents" / "__init__.py").write_text("")
    (folder / "agents" / "calc.py").write_text(AGENT)
    (folder / "loom.toml").write_text(TOML)
    return folder


async def direct_calls(folder: Path, calls: int) -> list[float]:
    """The baseline: ``rt.tool("add")`` from a process on the project's bus."""
    deadline = time.monotonic() + 60
    while not (folder / ".loom" / "bus.json").exists():  # join loom run's bus, never embed
        if time.monotonic() > deadline:
            raise RuntimeError("loom run did not start its bus within 60 s")
        await asyncio.sleep(0.2)
    async with open_runtime(folder / "loom.toml") as rt:
        deadline = time.monotonic() + 60
        while True:
            try:
                await rt.tool("add", {"a": 1, "b": 2}, timeout=2)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.3)
        durations = []
        for n in range(calls):
            started = time.perf_counter()
            assert await rt.tool("add", {"a": n, "b": 1}) == n + 1
            durations.append(time.perf_counter() - started)
        return durations


async def mcp_session(folder: Path, calls: int) -> dict[str, Any]:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(
        command=LOOM, args=["mcp", "serve"], cwd=folder, env=dict(os.environ)
    )
    started = time.perf_counter()
    with (folder / "bridge.log").open("w") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            session = time.perf_counter() - started
            t = time.perf_counter()
            listed = await client.list_tools()
            first_list = time.perf_counter() - t
            assert "add" in [tool.name for tool in listed.tools], listed.tools
            t = time.perf_counter()
            result = await client.call_tool("add", {"a": 20, "b": 22})
            first_call = time.perf_counter() - t
            assert result.structured_content == {"result": 42}
            durations = []
            for n in range(calls):
                t = time.perf_counter()
                await client.call_tool("add", {"a": n, "b": 1})
                durations.append(time.perf_counter() - t)
            t = time.perf_counter()
            unknown = await client.call_tool("ad", {"a": 1})
            unknown_s = time.perf_counter() - t
            assert unknown.is_error
    return {
        "session_start_ms": round(session * 1000, 1),
        "first_list_ms": round(first_list * 1000, 1),
        "first_call_ms": round(first_call * 1000, 1),
        "durations": durations,
        "unknown_tool_ms": round(unknown_s * 1000, 1),
    }


async def measure(calls: int) -> dict[str, Any]:
    folder = make_project()
    run = await asyncio.create_subprocess_exec(
        LOOM, "run", cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        direct = sorted(await direct_calls(folder, calls))
        mcp = await mcp_session(folder, calls)
    finally:
        run.send_signal(signal.SIGINT)
        await asyncio.wait_for(run.wait(), 30)
        shutil.rmtree(folder, ignore_errors=True)
    durations = sorted(mcp.pop("durations"))
    p50_direct, p50_mcp = percentile(direct, 50), percentile(durations, 50)
    return {
        **mcp,
        "calls": calls,
        "call_p50_ms": round(p50_mcp * 1000, 2),
        "call_p99_ms": round(percentile(durations, 99) * 1000, 2),
        "direct_call_p50_ms": round(p50_direct * 1000, 2),
        "direct_call_p99_ms": round(percentile(direct, 99) * 1000, 2),
        "mcp_over_direct": round(p50_mcp / p50_direct, 2) if p50_direct else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = asyncio.run(measure(args.calls))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")


if __name__ == "__main__":
    main()
