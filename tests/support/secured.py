"""CURVE projects for tests: a project whose runtime hosts the bus, and the loom.toml of a
process that joins it under another identity (with the same keys folder)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from loom_kernel import Runtime, open_runtime
from loom_kernel.bus.zeromq import read_discovery
from loom_kernel.security import generate_keys

TENANTS_TOML = (
    '[tenants.acme]\nidentities = ["acme-1"]\n[tenants.globex]\nidentities = ["globex-1"]\n'
)


def secured_project(project: Path, extra: str, identities: list[str]) -> Path:
    """``project/loom.toml`` on a CURVE bus with ``extra`` sections; key pairs for the
    broker, the host (``loom``) and ``identities``."""
    (project / "loom.toml").write_text(
        f'[runtime]\nheartbeat_interval = 0.2\n[bus]\nsecurity = "curve"\n{extra}'
    )
    for name in ("broker", "loom", *identities):
        generate_keys(project / ".loom" / "keys", name)
    return project / "loom.toml"


def joining_toml(project: Path, url: str, identity: str) -> Path:
    """The loom.toml of a process that joins ``url`` proving ``identity``."""
    folder = project / identity
    folder.mkdir()
    keys = project / ".loom" / "keys"
    (folder / "loom.toml").write_text(
        f'[runtime]\nheartbeat_interval = 0.2\n[bus]\nsecurity = "curve"\nmode = "connect"\n'
        f'url = "{url}"\nidentity = "{identity}"\nkeys = "{keys}"\n'
    )
    return folder / "loom.toml"


@contextlib.asynccontextmanager
async def two_tenants(project: Path) -> AsyncIterator[tuple[Runtime, Runtime, Runtime]]:
    """The operator's runtime hosting a CURVE bus with tenants acme and globex, and a runtime
    of each tenant (identities ``acme-1``, ``globex-1``) joined to it."""
    async with open_runtime(secured_project(project, TENANTS_TOML, ["acme-1", "globex-1"])) as host:
        record = read_discovery(project)
        assert record is not None
        url = record.address.publish
        async with (
            open_runtime(joining_toml(project, url, "acme-1")) as acme,
            open_runtime(joining_toml(project, url, "globex-1")) as globex,
        ):
            yield host, acme, globex
