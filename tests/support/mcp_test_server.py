"""A real MCP server for tests, built with the ``mcp`` SDK.

Run it over stdio (``python -m tests.support.mcp_test_server``) or streamable HTTP
(``... --http PORT``). Its tools cover what the action broker must handle: plain
results, structured results, tool errors, a hang, and a crash mid-call.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from mcp.server.mcpserver import Context, MCPServer
from pydantic import BaseModel

server = MCPServer("loom-test")


class Sum(BaseModel):
    total: int
    terms: list[int]


@server.tool()
def add(a: int, b: int) -> Sum:
    """Add two integers."""
    return Sum(total=a + b, terms=[a, b])


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def fail(reason: str = "broken on purpose") -> str:
    """Always fails with the given reason."""
    raise ValueError(reason)


@server.tool()
async def hang(seconds: float = 60.0) -> str:
    """Sleep, then answer (a hung call, for timeout tests)."""
    await asyncio.sleep(seconds)
    return "woke up"


@server.tool()
def crash(code: int = 3) -> str:
    """Exit the server process mid-call."""
    print("crashing on purpose", file=sys.stderr, flush=True)
    os._exit(code)


@server.tool()
def getenv(name: str) -> str:
    """The value of an environment variable in the server ("" when unset)."""
    return os.environ.get(name, "")


@server.tool()
def pid() -> int:
    """The server's process id (to see restarts)."""
    return os.getpid()


@server.tool()
def meta(ctx: Context) -> str:
    """The W3C ``traceparent`` the call carried in its ``_meta`` ("" when none)."""
    return str((ctx.request_context.meta or {}).get("traceparent", ""))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", type=int, default=None, help="serve streamable HTTP on PORT")
    options = parser.parse_args()
    if options.http is None:
        server.run()
    else:
        server.run(transport="streamable-http", host="127.0.0.1", port=options.http)


if __name__ == "__main__":
    main()
