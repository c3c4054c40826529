"""The action broker: one way to call every tool, wherever it lives.

``ctx.tool(name, args)`` reaches

- an ``@tool`` of an agent in any process, by a request on ``loom.tool.<name>``;
- a sandboxed tool declared as ``[tools.<name>]`` in ``loom.toml`` (a WebAssembly module
  run in this process under wasmtime, :mod:`.wasi_tools`), by its name;
- a tool of an MCP server declared as ``[mcp.<server>]`` in ``loom.toml``, by its
  qualified name ``<server>.<tool>`` (always), by its bare name when exactly one server
  has it and no agent of this process serves it (a collision asks for the qualified
  name), or by the server's name when the server has a single tool.

Every runtime answers ``loom.tools.query`` with its agents' tools, so
:meth:`ActionBroker.tools` lists what the whole bus can call, MCP tools included.

The broker is given what it uses: the ``[mcp.*]`` and ``[tools.*]`` settings, a tracer,
and a callable listing the tools this process's running agents serve.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..bus.transport import Subscription
from ..config import MCPServerConfig, SandboxedToolConfig
from ..errors import LoomError, RemoteError, RequestTimeout, ToolError, ToolTimeout
from ..messaging.collaboration import fan_out
from ..messaging.endpoint import Endpoint
from ..protocol import reserved
from ..stats import LatencyRecorder
from ..tracing.tracer import NO_TRACER, Tracer, traceparent_of
from .mcp_servers import MCPServer
from .tools import ToolInfo
from .wasi_tools import WasiTool

__all__ = ["ActionBroker", "ToolStatistics", "list_mcp_tools"]

log = logging.getLogger("loom.tools")
AGENT_TOOL_TIMEOUT = 10.0
REMOTE_QUERY_SEC = 0.2
REMOTE_CACHE_SEC = 10.0


@dataclass(frozen=True)
class ToolStatistics:
    """Calls made from this process to one tool."""

    name: str
    calls: int
    errors: int
    p50_ms: float
    p99_ms: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.latency = LatencyRecorder()


class ActionBroker:
    """Resolves and calls tools for one process; owns its MCP server connections.

    Args:
        servers: the ``[mcp.*]`` sections (disabled ones are left out).
        project_dir: where relative MCP server paths start.
        local_tools: the tools served by the running agents of this process, now.
        tracer: records a span per call.
        sandboxed: the ``[tools.*]`` sections (disabled ones are left out).
    """

    def __init__(
        self,
        servers: dict[str, MCPServerConfig],
        project_dir: Path,
        *,
        local_tools: Callable[[], list[ToolInfo]] = list,
        tracer: Tracer = NO_TRACER,
        sandboxed: dict[str, SandboxedToolConfig] | None = None,
    ):
        self.sandboxed: dict[str, WasiTool] = {
            name: WasiTool(name, settings, project_dir)
            for name, settings in (sandboxed or {}).items()
            if settings.enabled
        }
        self.servers: dict[str, MCPServer] = {
            name: MCPServer(name, settings, project_dir)
            for name, settings in servers.items()
            if settings.enabled
        }
        self.local_tools = local_tools
        self.tracer = tracer
        self._counters: dict[str, _Counter] = {}
        self._remote_names: set[str] = set()
        self._remote_checked = -REMOTE_CACHE_SEC
        self._query_sub: Subscription | None = None
        self._answering: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, endpoint: Endpoint) -> None:
        """Answer other processes' tool queries with this process's agent tools."""
        self._query_sub = await endpoint.subscribe(reserved.TOOLS_QUERY)
        self._answering = asyncio.get_running_loop().create_task(
            self._answer(endpoint, self._query_sub), name="loom:tools:query"
        )

    async def _answer(self, endpoint: Endpoint, sub: Subscription) -> None:
        async for event in sub:
            if event.reply_to and event.source != endpoint.source:
                with contextlib.suppress(LoomError), self.tracer.unsampled():
                    await endpoint.reply(event, [info.to_dict() for info in self.local_tools()])

    async def aclose(self) -> None:
        if self._answering is not None:
            self._answering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._answering
        for server in self.servers.values():
            await server.aclose()

    def announce(self, endpoint: Endpoint) -> None:
        """Tell the bus (the studio) that this process's tools changed."""
        tools = [info.to_dict() for info in self.local_tools()]
        with contextlib.suppress(LoomError):
            endpoint.report(
                reserved.TOOLS_CHANGED, {"process": endpoint.source, "tools": tools}, type="tools"
            )

    # -- listing ---------------------------------------------------------------------

    async def tools(
        self, endpoint: Endpoint, *, timeout: float = 0.5, mcp: bool = True
    ) -> list[ToolInfo]:
        """Every tool callable from here: agents of every process, then MCP servers.

        Other processes answer within ``timeout`` seconds; MCP servers are started to
        list their tools (one that fails to start is logged and left out).
        """
        found = {info.name: info for info in self.local_tools()}
        with self.tracer.unsampled():  # discovery is housekeeping, not a workflow
            replies = await fan_out(endpoint, reserved.TOOLS_QUERY, None, timeout=timeout)
        remote: set[str] = set()
        for reply in replies.events:
            for item in reply.data or []:
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    info = ToolInfo.from_dict(item)
                    found.setdefault(info.name, info)
                    remote.add(info.name)
        # what other processes serve, known now: a call right after needs no query of its own
        self._remote_names, self._remote_checked = remote, time.monotonic()
        # a [tools.<name>] entry is what ctx.tool(name) calls, even if an agent has one too
        found.update({name: tool.info for name, tool in self.sandboxed.items()})
        listed = list(found.values())
        if mcp:
            listed.extend(await self._mcp_tools(bare_names=set(found)))
        return sorted(listed, key=lambda info: info.name)

    async def _mcp_tools(self, bare_names: set[str]) -> list[ToolInfo]:
        return await list_mcp_tools(self.servers.values(), bare_names)

    # -- calling ---------------------------------------------------------------------

    async def call(
        self,
        endpoint: Endpoint,
        name: str,
        args: dict[str, Any] | None = None,
        *,
        timeout: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Any:
        """Call a tool by name; see the module docstring for how names resolve.

        ``endpoint`` is the caller's: an agent tool is requested from it.

        Raises:
            ToolError: no such tool, bad arguments, or the tool failed.
            ToolTimeout: no answer within ``timeout``.
        """
        if not isinstance(name, str) or not name:
            raise ToolError(f"a tool name is a non-empty str, got {name!r}")
        if args is not None and not isinstance(args, dict):
            raise ToolError(
                f"tool {name!r}: args must be a dict of argument names, got {type(args).__name__}"
            )
        counter = self._counters.setdefault(name, _Counter())
        counter.calls += 1
        started = time.perf_counter()
        attributes = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name}
        try:
            with self.tracer.span(
                f"tool {name}", "client", agent=endpoint.source, attributes=attributes
            ) as span:
                sandboxed = self.sandboxed.get(name)
                if sandboxed is not None:
                    if span is not None:
                        span.set_attribute("loom.tool.kind", "wasi")
                    return await sandboxed.call(args or {}, timeout=timeout)
                target = await self._resolve(endpoint, name)
                if target is None:
                    if span is not None:
                        span.set_attribute("loom.tool.kind", "agent")
                    return await self._call_agent(endpoint, name, args or {}, timeout)
                server, tool = target
                if span is not None:
                    span.set_attribute("loom.tool.kind", "mcp")
                    span.set_attribute("mcp.server.name", server.name)
                    span.set_attribute("mcp.tool.name", tool)
                    meta = {**(meta or {}), "traceparent": traceparent_of(span)}
                return await server.call(tool, args or {}, timeout=timeout, meta=meta)
        except ToolError:
            counter.errors += 1
            raise
        finally:
            counter.latency.record(time.perf_counter() - started)

    async def _resolve(self, endpoint: Endpoint, name: str) -> tuple[MCPServer, str] | None:
        """The MCP server and tool a name means, or None for an agent tool on the bus.

        An MCP server is started only when the name can be one of its tools and no agent
        serves it: calling an agent's tool never starts unrelated servers.
        """
        if any(info.name == name for info in self.local_tools()) or not self.servers:
            return None
        head, _, rest = name.partition(".")
        if rest and head in self.servers:
            return self.servers[head], rest
        if name in self.servers:
            return await self._only_tool_of(self.servers[name])
        if await self._served_by_an_agent(endpoint, name):
            return None  # as `rt.tools()` lists it: the agent's tool keeps the bare name
        owners = []
        for server in self.servers.values():
            try:
                await server.ensure_started()
            except ToolError as exc:
                log.warning("MCP server %r skipped while resolving %r: %s", server.name, name, exc)
                continue
            if name in server.tools:
                owners.append(server)
        if len(owners) > 1:
            choices = ", ".join(f"{server.name}.{name}" for server in owners)
            raise ToolError(
                f"tool {name!r} is ambiguous: several MCP servers have it; call {choices}"
            )
        return (owners[0], name) if owners else None

    @staticmethod
    async def _only_tool_of(server: MCPServer) -> tuple[MCPServer, str]:
        """A server's name stands for its tool when it has exactly one."""
        tools = await server.list_tools()
        if len(tools) == 1:
            return server, tools[0].name.split(".", 1)[1]
        names = ", ".join(sorted(info.name for info in tools))
        raise ToolError(
            f"{server.name!r} is an MCP server with {len(tools)} tools: call one of {names}"
        )

    async def _served_by_an_agent(self, endpoint: Endpoint, name: str) -> bool:
        """Whether an agent in another process serves ``name`` (asked once per 10 s)."""
        now = time.monotonic()
        if now - self._remote_checked > REMOTE_CACHE_SEC:
            with self.tracer.unsampled():
                replies = await fan_out(
                    endpoint, reserved.TOOLS_QUERY, None, timeout=REMOTE_QUERY_SEC
                )
            self._remote_names = {
                item.get("name")
                for reply in replies.events
                for item in (reply.data or [])
                if isinstance(item, dict)
            }
            self._remote_checked = time.monotonic()
        return name in self._remote_names

    async def _call_agent(
        self, endpoint: Endpoint, name: str, args: dict[str, Any], timeout: float | None
    ) -> Any:
        limit = timeout if timeout is not None else AGENT_TOOL_TIMEOUT
        try:
            reply = await endpoint.request(reserved.tool_topic(name), args, timeout=limit)
        except RequestTimeout:
            raise ToolTimeout(
                f"tool {name!r} did not answer within {limit:g} s: if it is slow, pass a "
                "longer timeout=; if nothing serves it, `loom tools` lists what is callable"
            ) from None
        except RemoteError as exc:
            if exc.error_type == "ToolError":
                raise ToolError(exc.remote_message.removeprefix("ToolError: ")) from None
            raise ToolError(f"tool {name!r} failed: {exc.remote_message}") from None
        return reply.data

    # -- statistics ------------------------------------------------------------------

    def statistics(self) -> list[ToolStatistics]:
        stats = []
        for name, counter in sorted(self._counters.items()):
            p50, p99 = counter.latency.percentiles_ms(50, 99)
            stats.append(ToolStatistics(name, counter.calls, counter.errors, p50, p99))
        return stats


async def list_mcp_tools(
    servers: Iterable[MCPServer], bare_names: Collection[str] = ()
) -> list[ToolInfo]:
    """The tools of MCP servers (started to list them), qualified as ``server.tool``.

    A tool's bare name is kept as an alias when no other server and no name in
    ``bare_names`` (agent tools) has it. A server that fails to start is logged and
    left out.
    """
    infos: list[ToolInfo] = []
    for server in servers:
        try:
            infos.extend(await server.list_tools())
        except ToolError as exc:
            log.warning("MCP server %r left out of the tool list: %s", server.name, exc)
    owners = Counter(info.name.split(".", 1)[1] for info in infos)
    result = []
    for info in infos:
        bare = info.name.split(".", 1)[1]
        unique = owners[bare] == 1 and bare not in bare_names
        result.append(replace(info, aliases=(bare,) if unique else ()))
    return result
