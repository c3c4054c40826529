"""``loom mcp serve``: the bus's tools as an MCP server over stdio."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..ops.mcp_bridge import serve_stdio
from ..runtime import open_runtime
from .project import load_project

app = typer.Typer(help="Model Context Protocol: serve the bus's tools to MCP clients.")


@app.command("serve")
def serve(
    config: Annotated[Path | None, typer.Option(help="The project's loom.toml.")] = None,
) -> None:
    """Serve the tools of the agents on the project's bus over MCP (stdio).

    Joins the project's bus (or starts one that agents then join). Declare it in an
    MCP client as: command `loom`, args `["mcp", "serve"]`, cwd the project folder.
    """
    settings = load_project(config)
    # stdout carries the protocol: every log line goes to stderr.
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)

    async def main() -> None:
        async with open_runtime(settings) as rt:
            await serve_stdio(rt)

    asyncio.run(main())
