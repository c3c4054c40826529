"""``loom tools``: everything callable with ``ctx.tool()``, with schemas."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ..capabilities import MCPServer, ToolInfo, list_mcp_tools
from ..capabilities.wasi_tools import WasiTool
from ..config import LoomConfig
from ..errors import ToolError
from .project import join_running_bus, load_project


def tools(
    name: Annotated[str | None, typer.Argument(help="Show one tool in full.")] = None,
    config: Annotated[Path | None, typer.Option(help="The project's loom.toml.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (schemas included).")] = False,
    mcp: Annotated[bool, typer.Option(help="Start the \\[mcp.*] servers to list theirs.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for other processes.")] = 0.5,
) -> None:
    """List the tools of the agents on the project's bus and of its MCP servers.

    Examples: `loom tools`, `loom tools time.get_current_time`, `loom tools --json`.
    """
    settings = load_project(config)
    console = Console(stderr=True)
    with console.status("listing tools"):
        found, joined = asyncio.run(_gather(settings, mcp=mcp, timeout=timeout))
    if name is not None:
        matches = [info for info in found if name == info.name or name in info.aliases]
        if not matches:
            known = ", ".join(info.name for info in found) or "none"
            raise ToolError(f"no tool {name!r} (known: {known})")
        found = matches
    if as_json:
        print(json.dumps([info.to_dict() for info in found], indent=2))
        return
    if not joined:
        console.print(
            "[yellow]no bus runs for this project: agent tools are listed once agents run[/]"
        )
    if name is not None:
        _print_detail(found[0])
    else:
        _print_table(found)


async def _gather(
    settings: LoomConfig, *, mcp: bool, timeout: float
) -> tuple[list[ToolInfo], bool]:
    async with join_running_bus(settings) as rt:
        if rt is not None:
            return await rt.tools(timeout=timeout, mcp=mcp), True
    sandboxed = [
        WasiTool(name, entry, settings.project_dir).info
        for name, entry in settings.tools.items()
        if entry.enabled
    ]
    if not mcp:
        return sandboxed, False
    servers = [
        MCPServer(server, entry, settings.project_dir)
        for server, entry in settings.mcp.items()
        if entry.enabled
    ]
    try:
        return sandboxed + await list_mcp_tools(servers), False
    finally:
        for server in servers:
            await server.aclose()


def _arguments(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    parts = []
    for key, spec in (schema.get("properties") or {}).items():
        kind = spec.get("type", "any") if isinstance(spec, dict) else "any"
        parts.append(f"{key}: {kind}" + ("" if key in required else "?"))
    return ", ".join(parts)


def _print_table(found: list[ToolInfo]) -> None:
    table = Table(title=f"{len(found)} tools")
    for column in ("name", "provider", "arguments", "description"):
        table.add_column(column, overflow="fold")
    for info in found:
        name = info.name + (f" ({', '.join(info.aliases)})" if info.aliases else "")
        summary = info.description.strip().splitlines()[0] if info.description.strip() else ""
        table.add_row(name, info.provider, _arguments(info.input_schema), summary)
    Console().print(table)


def _print_detail(info: ToolInfo) -> None:
    out = Console()
    out.print(f"[bold]{info.name}[/]  ({info.provider})")
    if info.aliases:
        out.print(f"also callable as: {', '.join(info.aliases)}")
    if info.description:
        out.print(info.description)
    out.print("[bold]input schema[/]")
    out.print_json(json.dumps(info.input_schema))
    if info.output_schema:
        out.print("[bold]output schema[/]")
        out.print_json(json.dumps(info.output_schema))
