"""``loom bench --tools``: tool-call round trips, measured in one run.

1. **Agent tool across processes** — a server process opens a runtime (embedded
   broker) with an agent serving a trivial ``@tool``; a client process joins the bus
   and calls it ``calls`` times in sequence with ``ctx.tool``: each round trip is timed
   (request out, reply decoded).
2. **MCP over stdio** — in one process, a trivial MCP server (this module run with
   ``serve-mcp``) is called ``calls`` times directly through the ``mcp`` SDK's
   ``Client`` (the baseline), then the same tool through Loom's action broker
   (``rt.tool("echo.echo", ...)``, a ``[mcp.echo]`` entry): the difference is Loom's
   overhead per MCP call.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ...stats import percentile

__all__ = ["measure_agent_tool", "measure_mcp_overhead", "run_tool_bench"]

_WARMUP = 50


def _summary(samples: list[float]) -> dict[str, float]:
    values = sorted(s * 1000 for s in samples)
    return {
        "calls": len(values),
        "p50_ms": round(percentile(values, 50), 4),
        "p99_ms": round(percentile(values, 99), 4),
        "mean_ms": round(sum(values) / len(values), 4) if values else 0.0,
    }


# -- agent tool across processes ------------------------------------------------------


def _tool_server(project: str, ready: Any, stop: Any) -> None:
    asyncio.run(_serve_tool(Path(project), ready, stop))


async def _serve_tool(project: Path, ready: Any, stop: Any) -> None:
    from ...agents import Agent, tool
    from ...runtime import open_runtime

    class Echo(Agent):
        @tool("bench.echo")
        async def echo(self, n: int) -> int:
            return n

    async with open_runtime(project / "loom.toml") as rt:
        await rt.start(Echo("bench-echo"))
        ready.set()
        await asyncio.to_thread(stop.wait)


def _tool_client(project: str, calls: int, results: Any) -> None:
    results.put(asyncio.run(_call_tool(Path(project), calls)))


async def _call_tool(project: Path, calls: int) -> list[float]:
    from ...runtime import open_runtime

    samples: list[float] = []
    async with open_runtime(project / "loom.toml") as rt:
        for n in range(_WARMUP + calls):
            started = time.perf_counter()
            await rt.tool("bench.echo", {"n": n})
            if n >= _WARMUP:
                samples.append(time.perf_counter() - started)
    return samples


def measure_agent_tool(calls: int) -> dict[str, float]:
    """p50/p99 of a trivial agent tool called from another process."""
    spawn = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="loom-bench-tools-") as folder:
        (Path(folder) / "loom.toml").write_text('[bus]\nmode = "auto"\n')
        ready, stop, results = spawn.Event(), spawn.Event(), spawn.Queue()
        server = spawn.Process(target=_tool_server, args=(folder, ready, stop))
        client = spawn.Process(target=_tool_client, args=(folder, calls, results))
        server.start()
        try:
            if not ready.wait(60):
                raise RuntimeError("the tool server did not start within 60 s")
            client.start()
            samples = results.get(timeout=120 + calls / 100)
        finally:
            stop.set()
            for process in (client, server):
                process.join(30)
                if process.is_alive():
                    process.kill()
    return _summary(samples)


# -- MCP over stdio --------------------------------------------------------------------


def _serve_mcp() -> None:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("loom-bench")

    @server.tool()
    def echo(n: int) -> int:
        """Return n."""
        return n

    server.run()


async def _direct_mcp(calls: int, errlog: Any) -> list[float]:
    from mcp import Client, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=sys.executable, args=["-m", __name__, "serve-mcp"])
    samples: list[float] = []
    async with Client(stdio_client(params, errlog=errlog)) as client:
        await client.list_tools()
        for n in range(_WARMUP + calls):
            started = time.perf_counter()
            await client.call_tool("echo", {"n": n})
            if n >= _WARMUP:
                samples.append(time.perf_counter() - started)
    return samples


async def _loom_mcp(calls: int) -> list[float]:
    from ...config import parse_config
    from ...runtime import open_runtime

    samples: list[float] = []
    with tempfile.TemporaryDirectory(prefix="loom-bench-mcp-") as folder:
        raw = {"mcp": {"echo": {"command": "python", "args": ["-m", __name__, "serve-mcp"]}}}
        config = parse_config(raw, path=Path(folder) / "loom.toml")
        async with open_runtime(config) as rt:
            await rt.tool("echo.echo", {"n": 0})
            for n in range(_WARMUP + calls):
                started = time.perf_counter()
                await rt.tool("echo.echo", {"n": n})
                if n >= _WARMUP:
                    samples.append(time.perf_counter() - started)
    return samples


def measure_mcp_overhead(calls: int) -> dict[str, Any]:
    """The same MCP tool called directly with the SDK, then through ``ctx.tool``."""
    with open(Path(tempfile.gettempdir()) / "loom-bench-mcp.log", "w") as errlog:
        direct = _summary(asyncio.run(_direct_mcp(calls, errlog)))
    loom = _summary(asyncio.run(_loom_mcp(calls)))
    return {
        "direct": direct,
        "loom": loom,
        "overhead_p50_ms": round(loom["p50_ms"] - direct["p50_ms"], 4),
        "ratio_p50": round(loom["p50_ms"] / direct["p50_ms"], 3) if direct["p50_ms"] else 0.0,
    }


def run_tool_bench(calls: int, progress: Any = lambda _: None) -> dict[str, Any]:
    progress(f"agent tool across processes, {calls:,} calls")
    agent = measure_agent_tool(calls)
    progress(f"MCP tool over stdio: direct SDK client, then ctx.tool, {calls:,} calls each")
    return {"agent_tool": agent, "mcp_stdio": measure_mcp_overhead(calls)}


if __name__ == "__main__":
    if sys.argv[1:] == ["serve-mcp"]:
        _serve_mcp()
    else:
        sys.exit("usage: python -m loom_kernel.ops.bench.tools serve-mcp")
