"""A CURVE project with ACLs, end to end: real runtimes under two identities (the host
proves ``loom``, the guest ``analyst``), agents, tool calls across processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from loom_kernel import Agent, open_runtime, tool
from loom_kernel.bus.zeromq import read_discovery
from loom_kernel.errors import ToolError
from loom_kernel.protocol import reserved
from tests.support.secured import joining_toml, secured_project, two_tenants

WAIT = 5.0


class Desk(Agent):
    @tool()
    async def quote(self, symbol: str) -> float:
        """A price."""
        return 101.5

    @tool()
    async def wire(self, amount: int) -> str:
        """Move money."""
        return f"wired {amount}"


async def test_an_identity_calls_the_tools_its_acl_lists_and_no_other(project: Path) -> None:
    acl = '[acl.analyst]\ntools = ["quote"]\npublish = ["analysis.*"]\n'
    async with open_runtime(secured_project(project, acl, ["analyst"])) as host:
        await host.start(Desk("desk"))
        record = read_discovery(project)
        assert record is not None
        denied = await host.subscribe(reserved.ALL_DENIED)
        async with open_runtime(joining_toml(project, record.address.publish, "analyst")) as guest:
            assert await guest.tool("quote", {"symbol": "AAPL"}, timeout=WAIT) == 101.5
            refused = r"AccessDenied: the bus refused it: \[acl.analyst\] tools"
            with pytest.raises(ToolError, match=refused):
                await guest.tool("wire", {"amount": 10**6}, timeout=WAIT)
            report = await denied.get(timeout=WAIT)
            assert report.data["identity"] == "analyst"
            assert report.data["topic"] == reserved.tool_topic("wire")
            # `loom status` (run as the operator, identity loom) says the broker refused some
            status = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "loom_kernel.cli.app", "status", "--wait", "1.5"],
                cwd=project, capture_output=True, text=True, timeout=60,
                env={**os.environ, "COLUMNS": "200"},
            )  # fmt: skip
            assert status.returncode == 0, status.stderr
            assert "security: the broker refused" in status.stdout, status.stdout
            seen = await host.subscribe("*.trend.*")
            await guest.emit("orders.trend.AAPL", {"qty": 5})
            await guest.emit("analysis.trend.AAPL", {"up": True})  # not in [acl.analyst] publish
            assert (await seen.get(timeout=WAIT)).topic == "analysis.trend.AAPL"
            with contextlib.suppress(TimeoutError):
                extra = await seen.get(timeout=0.5)
                pytest.fail(f"{extra.topic} crossed the ACL")


class AcmeDesk(Agent):
    @tool("acme.quote")
    async def quote(self) -> float:
        """Acme's price."""
        return 1.0


class GlobexDesk(Agent):
    @tool("globex.quote")
    async def quote(self) -> float:
        """Globex's price."""
        return 2.0


async def test_tenants_do_not_see_each_other(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with two_tenants(project) as (host, acme, globex):
        await acme.start(AcmeDesk("acme-desk"))
        await globex.start(GlobexDesk("globex-desk"))
        # tool discovery: each tenant sees its own tools; the host (no tenant) sees all
        acme_tools = {t.name for t in await acme.tools(timeout=1.0, mcp=False)}
        globex_tools = {t.name for t in await globex.tools(timeout=1.0, mcp=False)}
        all_tools = {t.name for t in await host.tools(timeout=1.0, mcp=False)}
        assert acme_tools == {"acme.quote"}
        assert globex_tools == {"globex.quote"}
        assert {"acme.quote", "globex.quote"} <= all_tools
        assert await acme.tool("acme.quote", timeout=WAIT) == 1.0
        with pytest.raises(ToolError, match=r"AccessDenied.*tenant 'globex'"):
            await globex.tool("acme.quote", timeout=WAIT)
        # events: what acme publishes in its namespace never reaches globex
        spy = await globex.subscribe("acme.*")
        mine = await acme.subscribe("acme.*")
        seen = await host.subscribe("acme.*")
        await acme.emit("acme.orders.new", {"qty": 1})
        assert (await mine.get(timeout=WAIT)).topic == "acme.orders.new"
        assert (await seen.get(timeout=WAIT)).topic == "acme.orders.new"
        with contextlib.suppress(TimeoutError):
            leaked = await spy.get(timeout=0.5)
            pytest.fail(f"{leaked.topic} crossed from acme to globex")
        # the refused subscription is not silent: globex's runtime logged why
        said = "the bus refused subscribe acme. of identity globex-1: tenant 'globex'"
        for _ in range(int(WAIT / 0.05)):  # bounded: WAIT seconds at most
            if any(said in m for m in caplog.messages):
                break
            await asyncio.sleep(0.05)
        assert any(said in m for m in caplog.messages), caplog.messages
