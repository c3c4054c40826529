"""The bus's tools as an MCP server, so any MCP client can call running agents.

``loom mcp serve`` runs :func:`serve_stdio`: an MCP server on stdin/stdout whose tools
are the ``@tool`` methods of every agent on the project's bus (listed afresh on each
``tools/list``), and with ``--with-mcp`` the tools of the project's ``[mcp.*]`` servers
too. An IDE or a desktop assistant declares it like any stdio server::

    {"command": "loom", "args": ["mcp", "serve"], "cwd": "/path/to/project"}

What a client meets:

- an unknown tool is refused at once, with the names closest to it;
- arguments are checked against the tool's schema here: a client's mistake is answered
  as such and never reaches (nor counts against) the agent;
- the client's trace context (``_meta.traceparent``) and the MCP SDK's ``tools/call``
  span are the parents of Loom's ``tool`` span: one trace from the client to the agent.
"""

from __future__ import annotations

import difflib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from ..capabilities import ToolInfo, check_arguments, load_validator
from ..errors import LoomError, ToolError
from ..extras import require
from ..tracing.otel import current_traceparent

if TYPE_CHECKING:
    from mcp.server.lowlevel import Server

    from ..runtime import Runtime

__all__ = ["ToolBridge", "bridge_server", "serve_stdio"]

log = logging.getLogger("loom.mcp.bridge")
LISTING_TTL = 5.0  # seconds a listing answers calls before the bus is asked again


class ToolBridge:
    """What the MCP server serves: the bus's tools, listed and called through ``rt``.

    Args:
        rt: an open runtime on the project's bus.
        list_timeout: seconds other processes have to say which tools they serve.
        with_mcp: also serve the project's ``[mcp.*]`` servers' tools (qualified names).
    """

    def __init__(self, rt: Runtime, *, list_timeout: float = 0.5, with_mcp: bool = False):
        self.rt = rt
        self.list_timeout = list_timeout
        self.with_mcp = with_mcp
        self._listing: dict[str, ToolInfo] = {}
        self._listed_at = -LISTING_TTL

    async def start(self) -> dict[str, ToolInfo]:
        """List the tools and load the argument validator, before the first request."""
        await load_validator()
        return await self.tools(fresh=True)

    async def tools(self, *, fresh: bool = False) -> dict[str, ToolInfo]:
        """The tools callable now, by name (asked again when older than ``LISTING_TTL``)."""
        if fresh or time.monotonic() - self._listed_at > LISTING_TTL:
            infos = await self.rt.tools(timeout=self.list_timeout, mcp=self.with_mcp)
            self._listing = {info.name: info for info in infos}
            self._listed_at = time.monotonic()
        return self._listing

    async def find(self, name: str) -> ToolInfo:
        """The tool named ``name``; a fresh look before giving up.

        Raises:
            ToolError: no such tool, with the closest names.
        """
        info = (await self.tools()).get(name) or (await self.tools(fresh=True)).get(name)
        if info is not None:
            return info
        names = sorted(self._listing)
        near = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(map(repr, near))}? " if near else ""
        served = ", ".join(names) if names else "none: are the project's agents running?"
        raise ToolError(f"no tool {name!r} on this project's bus: {hint}tools: {served}")

    async def call(self, name: str, arguments: dict[str, Any]) -> Any:
        """Check the name and the arguments here, then call the tool under the caller's
        trace context.

        Raises:
            ToolError: unknown tool, bad arguments (the client's), or the tool failed.
        """
        info = await self.find(name)
        check_arguments(info, arguments)
        with self.rt.tracing.joining(current_traceparent()):
            return await self.rt.tool(name, arguments)


def bridge_server(bridge: ToolBridge) -> Server[Any]:
    """A low-level MCP ``Server`` serving ``bridge``'s tools."""
    require("mcp", "`loom mcp serve`")
    import mcp_types as types
    from mcp.server.lowlevel import Server

    async def list_tools(_ctx: Any, _params: Any) -> types.ListToolsResult:
        infos = (await bridge.tools(fresh=True)).values()
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
            result = await bridge.call(params.name, dict(params.arguments or {}))
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


async def serve_stdio(bridge: ToolBridge) -> None:
    """Serve MCP on this process's stdin/stdout until the client closes it."""
    from mcp.server.stdio import stdio_server

    server = bridge_server(bridge)
    async with stdio_server() as (read_stream, write_stream):
        log.info("serving the bus's tools over MCP (stdio)")
        await server.run(read_stream, write_stream, server.create_initialization_options())
