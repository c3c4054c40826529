"""The bus's tools as an MCP server, so any MCP client can call running agents.

``loom mcp serve`` runs :func:`serve_stdio`: an MCP server on stdin/stdout whose tools
are the ``@tool`` methods of every agent on the project's bus (listed afresh on each
``tools/list``). An IDE or a desktop assistant declares it like any stdio server::

    {"command": "loom", "args": ["mcp", "serve"], "cwd": "/path/to/project"}
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from ..errors import LoomError

if TYPE_CHECKING:
    from mcp.server.lowlevel import Server

    from ..runtime import Runtime

__all__ = ["bridge_server", "serve_stdio"]

log = logging.getLogger("loom.mcp.bridge")


def bridge_server(rt: Runtime, *, list_timeout: float = 0.5) -> Server[Any]:
    """A low-level MCP ``Server`` whose tools are the agents' tools on ``rt``'s bus."""
    import mcp_types as types
    from mcp.server.lowlevel import Server

    async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
        infos = await rt.tools(timeout=list_timeout, mcp=False)
        return types.ListToolsResult(
            tools=[
                types.Tool(
                    name=info.name,
                    description=info.description or f"{info.name} ({info.provider})",
                    input_schema=info.input_schema or {"type": "object"},
                    output_schema=_object_schema(info.output_schema),
                )
                for info in infos
            ]
        )

    async def call_tool(_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            result = await rt.tool(params.name, dict(params.arguments or {}))
        except LoomError as exc:
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=str(exc))], is_error=True
            )
        structured = result if isinstance(result, dict) else {"result": result}
        text = result if isinstance(result, str) else json.dumps(result, default=str)
        return types.CallToolResult(
            content=[types.TextContent(type="text", text=text)], structured_content=structured
        )

    return Server(
        "loom",
        instructions="Tools of the Loom agents running on this project's bus.",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _object_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    # MCP output schemas describe an object; other results travel wrapped as {"result": ...}.
    if schema and schema.get("type") == "object":
        return schema
    return None


async def serve_stdio(rt: Runtime) -> None:
    """Serve MCP on this process's stdin/stdout until the client closes it."""
    from mcp.server.stdio import stdio_server

    server = bridge_server(rt)
    async with stdio_server() as (read_stream, write_stream):
        log.info("serving the bus's tools over MCP (stdio)")
        await server.run(read_stream, write_stream, server.create_initialization_options())
