"""MCP servers declared in ``loom.toml``, started lazily and kept alive.

Each ``[mcp.<name>]`` entry becomes an :class:`MCPServer` connection: on the first call
(or listing) it starts the server (``command``/``args`` over stdio, or ``url`` over
streamable HTTP) through the ``mcp`` SDK's ``Client``, lists its tools, and then
serves every call on the same session. A crashed server is restarted on the next call
(up to ``max_restarts`` times); a hung call times out after ``timeout_sec``; a result
with ``is_error`` becomes a :class:`~loom_kernel.errors.ToolError`.

The SDK's transports are anyio context managers that must be entered and left by the
same task, so each connection lives in one owner task that the manager starts and
stops; calls from any task go through the open session.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..config import ENV_REFERENCE, MCPServerConfig
from ..errors import ToolError, ToolTimeout
from ..extras import require
from .tools import ToolInfo, check_arguments

__all__ = ["MCPServer", "MCPServerStatistics", "tool_result_data"]

log = logging.getLogger("loom.mcp")
_STOP_GRACE = 5.0
#: Crashes within this many seconds count toward ``max_restarts``.
RESTART_WINDOW = 60.0


@dataclass(frozen=True)
class MCPServerStatistics:
    """What one MCP server connection has done."""

    name: str
    transport: str
    state: str
    tools: int
    calls: int
    errors: int
    restarts: int
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class MCPServer:
    """One ``[mcp.<name>]`` server: started on first use, restarted after a crash."""

    def __init__(self, name: str, config: MCPServerConfig, project_dir: Path):
        self.name = name
        self.config = config
        self.project_dir = project_dir
        self.log_path = project_dir / ".loom" / "logs" / f"mcp-{name}.log"
        self.tools: dict[str, ToolInfo] = {}
        self._client: Any = None
        self._owner: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._lock = asyncio.Lock()
        self._errlog: IO[str] | None = None
        self._starts = 0
        self._start_times: list[float] = []
        self.calls = 0
        self.errors = 0
        self.last_error: str | None = None

    # -- lifecycle -------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``stopped``, ``running`` or ``crashed`` (will restart on the next call)."""
        if self._client is not None and self._owner is not None and not self._owner.done():
            return "running"
        return "crashed" if self._starts and self.last_error else "stopped"

    @property
    def restarts(self) -> int:
        return max(0, self._starts - 1)

    async def ensure_started(self) -> None:
        """Start the server and list its tools, unless it already runs.

        Raises:
            ToolError: the command is missing, the server failed to start or to answer
                within ``startup_timeout_sec``, or it crashed too often.
        """
        if self.state == "running":
            return
        async with self._lock:
            if self.state == "running":
                return
            await self._shutdown()
            now = time.monotonic()
            recent = [t for t in self._start_times if now - t < RESTART_WINDOW]
            if self.config.command is not None and len(recent) > self.config.max_restarts:
                raise ToolError(
                    f"MCP server {self.name!r} was started {len(recent)} times in the last "
                    f"{RESTART_WINDOW:g} s and is given up for now (last error: "
                    f"{self.last_error}); fix it or raise [mcp.{self.name}] max_restarts "
                    f"(its log: {self.log_path})"
                )
            self._start_times = [*recent, now]
            self._starts += 1
            await self._start()

    async def _start(self) -> None:
        # The SDK is imported only when a server is used, in a thread: the first import
        # takes about a second that the event loop's other agents should not lose.
        await asyncio.to_thread(_import_sdk)
        from mcp import Client

        transport = self._transport()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # read ready's outcome even when nobody waits for it any more (a cancelled start)
        ready.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._stop = asyncio.Event()
        self._owner = asyncio.get_running_loop().create_task(
            self._own(Client(transport), ready, self._stop), name=f"loom:mcp:{self.name}"
        )
        try:
            await asyncio.wait_for(asyncio.shield(ready), self.config.startup_timeout_sec)
        except TimeoutError:
            await self._shutdown()
            self.last_error = f"no answer within {self.config.startup_timeout_sec:g} s"
            raise ToolTimeout(
                f"MCP server {self.name!r} did not start within "
                f"{self.config.startup_timeout_sec:g} s{self._stderr_tail()}: raise "
                f"[mcp.{self.name}] startup_timeout_sec if it is slow to start"
            ) from None
        except Exception as exc:
            await self._shutdown()
            self.last_error = _explain(exc)
            if self.config.url is not None:
                raise ToolError(
                    f"cannot reach MCP server {self.name!r} at {self.config.url}: "
                    f"{self.last_error}; is it running? (fix [mcp.{self.name}].url if not)"
                ) from None
            raise ToolError(
                f"MCP server {self.name!r} failed to start: {self.last_error}{self._stderr_tail()}"
            ) from None
        log.info("MCP server %r started (%d tools)", self.name, len(self.tools))

    def _transport(self) -> Any:
        config = self.config
        if config.url is not None:
            from mcp.client.streamable_http import streamable_http_client
            from mcp.shared._httpx_utils import create_mcp_http_client

            headers = {k: self._expand(v, f"headers.{k}") for k, v in config.headers.items()}
            http = create_mcp_http_client(headers=headers or None)
            return streamable_http_client(config.url, http_client=http)
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client

        command = _resolve_command(self.name, config.command or "")
        cwd = self.project_dir / config.cwd if config.cwd else self.project_dir
        params = StdioServerParameters(
            command=command,
            args=list(config.args),
            env={k: self._expand(v, f"env.{k}") for k, v in config.env.items()} or None,
            cwd=cwd,
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._errlog is None:
            self._errlog = self.log_path.open("a", encoding="utf-8", buffering=1)
        self._errlog.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} start {command}\n")
        return stdio_client(params, errlog=self._errlog)

    def _expand(self, value: str, key: str) -> str:
        """``${VAR}`` in env and header values comes from Loom's environment (secrets
        stay out of loom.toml)."""

        def lookup(match: re.Match[str]) -> str:
            variable = match.group(1)
            if variable not in os.environ:
                raise ToolError(
                    f"[mcp.{self.name}].{key} uses ${{{variable}}}, which is not set: "
                    f"`export {variable}=...` before starting"
                )
            return os.environ[variable]

        return ENV_REFERENCE.sub(lookup, value)

    async def _own(self, client: Any, ready: asyncio.Future[None], stop: asyncio.Event) -> None:
        """The owner task: enters the SDK client, lists tools, waits until told to stop."""
        try:
            async with client:
                listing = await client.list_tools()
                self.tools = {tool.name: self._info(tool) for tool in listing.tools}
                self._client = client
                if not ready.done():
                    ready.set_result(None)
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else ToolError(str(exc)))
            elif not stop.is_set():
                self.last_error = f"the server connection ended: {_explain(exc)}"
                log.warning("MCP server %r: %s", self.name, self.last_error)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._client = None

    def _info(self, tool: Any) -> ToolInfo:
        return ToolInfo(
            name=f"{self.name}.{tool.name}",
            description=tool.description or "",
            input_schema=dict(tool.input_schema or {"type": "object"}),
            output_schema=dict(tool.output_schema) if tool.output_schema else None,
            provider=f"mcp:{self.name}",
            kind="mcp",
        )

    async def _shutdown(self) -> None:
        owner, self._owner = self._owner, None
        if self._stop is not None:
            self._stop.set()
        if owner is not None and not owner.done():
            try:
                await asyncio.wait_for(asyncio.shield(owner), _STOP_GRACE)
            except (TimeoutError, Exception):
                owner.cancel()
                with contextlib.suppress(BaseException):
                    await owner
        self._client = None

    async def aclose(self) -> None:
        """Stop the server (closing stdin, then terminating it). Idempotent."""
        async with self._lock:
            await self._shutdown()
        if self._errlog is not None:
            self._errlog.close()
            self._errlog = None

    # -- calls -----------------------------------------------------------------------

    async def list_tools(self) -> list[ToolInfo]:
        await self.ensure_started()
        return list(self.tools.values())

    async def call(
        self,
        tool: str,
        args: dict[str, Any],
        *,
        timeout: float | None = None,
        meta: dict[str, Any] | None = None,
    ) -> Any:
        """Call one tool; returns its structured content, or its text content.

        Raises:
            ToolError: unknown tool, the tool reported an error, the server crashed.
            ToolTimeout: no answer within ``timeout`` (default ``timeout_sec``).
        """
        await self.ensure_started()
        if tool not in self.tools:
            known = ", ".join(sorted(self.tools)) or "none"
            raise ToolError(f"MCP server {self.name!r} has no tool {tool!r} (it has: {known})")
        check_arguments(self.tools[tool], args)
        limit = timeout if timeout is not None else self.config.timeout_sec
        self.calls += 1
        try:
            result = await self._call(tool, args, limit, meta)
        except ToolError as exc:
            self.errors += 1
            self.last_error = str(exc)
            raise
        if result.is_error:
            self.errors += 1
            text = _tidy(_text_of(result)) or "the tool reported an error without a message"
            raise ToolError(f"tool {self.name}.{tool} failed: {text}")
        return tool_result_data(result)

    async def _call(
        self, tool: str, args: dict[str, Any], limit: float, meta: dict[str, Any] | None
    ) -> Any:
        from mcp.shared.exceptions import MCPError

        client, owner = self._client, self._owner
        call = asyncio.ensure_future(
            client.call_tool(tool, args, read_timeout_seconds=limit, meta=meta)
        )
        # The owner task ends when the server dies: race the call against it.
        try:
            done, _ = await asyncio.wait(
                {call, owner}, timeout=limit + 1.0, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:  # our caller gave up: so does the call
            call.cancel()
            with contextlib.suppress(BaseException):
                await call
            raise
        if call not in done:
            call.cancel()
            with contextlib.suppress(BaseException):
                await call
            if owner in done:
                raise ToolError(self._lost(tool))
            raise ToolTimeout(
                f"tool {self.name}.{tool} did not answer within {limit:g} s: the server may be "
                f"hung; raise [mcp.{self.name}] timeout_sec or pass timeout= if it is just slow"
            )
        try:
            return call.result()
        except MCPError as exc:
            if _timed_out(exc):
                raise ToolTimeout(
                    f"tool {self.name}.{tool} did not answer within {limit:g} s: the server may "
                    f"be hung; raise [mcp.{self.name}] timeout_sec or pass timeout= if it is "
                    "just slow"
                ) from None
            if self.state != "running" or _connection_lost(exc):
                await self._mark_crashed(str(exc))
                raise ToolError(self._lost(tool)) from None
            raise ToolError(f"tool {self.name}.{tool} failed: {_tidy(str(exc))}") from None
        except Exception as exc:
            await self._mark_crashed(_explain(exc))
            raise ToolError(
                f"MCP server {self.name!r} failed during the call to {tool!r}: {_explain(exc)}"
                f"{self._stderr_tail()}; it will be restarted on the next call"
            ) from None

    def _lost(self, tool: str) -> str:
        if self.config.url is not None:
            return (
                f"MCP server {self.name!r} at {self.config.url} stopped answering during the "
                f"call to {tool!r}; it will be reconnected on the next call"
            )
        return (
            f"MCP server {self.name!r} exited during the call to {tool!r}"
            f"{self._stderr_tail()}; it will be restarted on the next call"
        )

    async def _mark_crashed(self, why: str) -> None:
        self.last_error = why
        async with self._lock:
            await self._shutdown()

    def _stderr_tail(self, lines: int = 5) -> str:
        if self.config.url is not None or not self.log_path.is_file():
            return ""
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            section = text.rsplit("\n--- ", 1)[-1].splitlines()[1:]
            tail = [_tidy(line) for line in section if _tidy(line)][-lines:]
            if tail:
                return " (its stderr ends with: " + " | ".join(tail)[-400:] + ")"
        return ""

    def statistics(self) -> MCPServerStatistics:
        return MCPServerStatistics(
            name=self.name,
            transport=self.config.transport,
            state=self.state,
            tools=len(self.tools),
            calls=self.calls,
            errors=self.errors,
            restarts=self.restarts,
            last_error=self.last_error,
        )


def _import_sdk() -> None:
    """Import what the first call needs (jsonschema, for check_arguments, takes ~0.7 s)."""
    import importlib

    require("mcp", "MCP servers ([mcp.*] in loom.toml)")
    for module in ("jsonschema", "mcp.client.stdio", "mcp.client.streamable_http"):
        importlib.import_module(module)


def _resolve_command(name: str, command: str) -> str:
    # "python" means the interpreter running Loom, so a server installed in the
    # project's environment is found even when that environment is not on PATH.
    if command in ("python", "python3"):
        return sys.executable
    found = shutil.which(command)
    if found is None:
        raise ToolError(f"command {command!r} not found: install it or fix [mcp.{name}].command")
    return found


def tool_result_data(result: Any) -> Any:
    """The useful part of an MCP ``CallToolResult``: structured content, else text.

    Structured content wrapped as ``{"result": value}`` (how SDK servers return plain
    values) is unwrapped; a single text block is returned as a string, several as a
    list; other blocks (images, resources) as their dicts.
    """
    structured = result.structured_content
    if structured is not None:
        if isinstance(structured, dict) and list(structured) == ["result"]:
            return structured["result"]
        return structured
    blocks = [_block_data(block) for block in result.content]
    if len(blocks) == 1:
        return blocks[0]
    return blocks


def _block_data(block: Any) -> Any:
    if getattr(block, "type", None) == "text":
        return block.text
    dump = getattr(block, "model_dump", None)
    return dump(mode="json", exclude_none=True) if dump else block


def _tidy(text: str) -> str:
    """One readable line: no box drawing, no pydantic help links, single spaces."""
    kept = [
        line
        for line in text.splitlines()
        if line.strip()
        and "errors.pydantic.dev" not in line
        and not line.strip().startswith("For further")
    ]
    flat = " ".join(" ".join(kept).split())
    return "".join(ch for ch in flat if not 0x2500 <= ord(ch) <= 0x257F).strip(" |")


def _text_of(result: Any) -> str:
    return " ".join(b.text for b in result.content if getattr(b, "type", None) == "text")


def _timed_out(exc: Exception) -> bool:
    return "timed out" in str(exc).lower() or getattr(exc, "code", None) == 408


def _connection_lost(exc: Exception) -> bool:
    text = str(exc).lower()
    return "connection closed" in text or ("closed" in text and "stream" in text)


def _explain(exc: BaseException) -> str:
    """A one-line cause, digging through anyio's exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc) or type(exc).__name__
    if isinstance(exc, json.JSONDecodeError):
        return f"it wrote something that is not JSON-RPC on stdout ({text})"
    return f"{type(exc).__name__}: {text}"
