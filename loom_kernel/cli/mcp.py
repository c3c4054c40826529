"""``loom mcp serve``: the bus's tools as an MCP server over stdio."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..config import LoomConfig
from ..ops.mcp_bridge import ToolBridge, serve_stdio
from ..runtime import Runtime, open_runtime
from .project import load_project

app = typer.Typer(help="Model Context Protocol: serve the bus's tools to MCP clients.")


@app.command("serve")
def serve(
    config: Annotated[Path | None, typer.Option(help="The project's loom.toml.")] = None,
    with_mcp: Annotated[
        bool,
        typer.Option("--with-mcp", help="Also serve the tools of the project's [mcp.*] servers."),
    ] = False,
) -> None:
    """Serve the tools of the agents on the project's bus over MCP (stdio).

    Joins the project's bus (or starts one that its agents then join) and says on stderr
    which project, which bus and how many tools. Declare it in an MCP client as: command
    `loom`, args `["mcp", "serve"]`, cwd the project folder (or `--config`).
    """
    settings = load_project(config)
    # stdout carries the protocol: every log line goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)

    async def main() -> None:
        async with open_runtime(settings) as rt:
            bridge = ToolBridge(rt, with_mcp=with_mcp)
            tools = await bridge.start()
            announce(settings, rt, sorted(tools))
            await serve_stdio(bridge)

    asyncio.run(main())


def announce(settings: LoomConfig, rt: Runtime, tools: list[str]) -> None:
    """Where the server runs and what it serves, on stderr (the client's log)."""
    where = rt.address.publish if rt.address else "the bus"
    found = f"{settings.path}" if settings.path else "no loom.toml here or above: defaults"
    joined = "started here (no bus was running)" if rt.embedded else "joined"
    say(f"loom mcp serve: project {settings.project_dir} ({found})")
    say(f"loom mcp serve: bus {where}, {joined}; {len(tools)} tool(s): {', '.join(tools)}")
    if settings.path is None:
        say(
            "loom mcp serve: warning: not in a Loom project: run it from the project's folder "
            "(the client's `cwd`) or pass --config /path/to/loom.toml"
        )
    if not tools:
        say(
            "loom mcp serve: warning: no agent on this bus serves a tool yet: start the "
            "project's agents (`loom run`); tools appear as they start"
        )


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
