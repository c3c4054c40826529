"""A CURVE project with ACLs, end to end: real runtimes under two identities (the host
proves ``loom``, the guest ``analyst``), agents, tool calls across processes."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from loom_kernel import Agent, open_runtime, tool
from loom_kernel.bus.zeromq import read_discovery
from loom_kernel.errors import ToolError
from loom_kernel.protocol import reserved
from loom_kernel.security import generate_keys

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


def _guest_toml(project: Path, url: str) -> Path:
    folder = project / "guest"
    folder.mkdir()
    keys = project / ".loom" / "keys"
    (folder / "loom.toml").write_text(
        f'[bus]\nsecurity = "curve"\nmode = "connect"\nurl = "{url}"\n'
        f'identity = "analyst"\nkeys = "{keys}"\n'
    )
    return folder / "loom.toml"


async def test_an_identity_calls_the_tools_its_acl_lists_and_no_other(project: Path) -> None:
    (project / "loom.toml").write_text(
        '[runtime]\nheartbeat_interval = 0.2\n[bus]\nsecurity = "curve"\n'
        '[acl.analyst]\ntools = ["quote"]\npublish = ["analysis.*"]\n'
    )
    for name in ("broker", "loom", "analyst"):
        generate_keys(project / ".loom" / "keys", name)
    async with open_runtime(project / "loom.toml") as host:
        await host.start(Desk("desk"))
        record = read_discovery(project)
        assert record is not None
        denied = await host.subscribe(reserved.SECURITY_DENIED)
        async with open_runtime(_guest_toml(project, record.address.publish)) as guest:
            assert await guest.tool("quote", {"symbol": "AAPL"}, timeout=WAIT) == 101.5
            refused = r"AccessDenied: the bus refused it: \[acl.analyst\] tools"
            with pytest.raises(ToolError, match=refused):
                await guest.tool("wire", {"amount": 10**6}, timeout=WAIT)
            report = await denied.get(timeout=WAIT)
            assert report.data["identity"] == "analyst"
            assert report.data["topic"] == reserved.tool_topic("wire")
            seen = await host.subscribe("*.trend.*")
            await guest.emit("orders.trend.AAPL", {"qty": 5})
            await guest.emit("analysis.trend.AAPL", {"up": True})  # not in [acl.analyst] publish
            assert (await seen.get(timeout=WAIT)).topic == "analysis.trend.AAPL"
            with contextlib.suppress(TimeoutError):
                extra = await seen.get(timeout=0.5)
                pytest.fail(f"{extra.topic} crossed the ACL")
