"""A process's place on a NATS bus: its client, and whether it stores the project's spans.

NATS runs apart from Loom, so no process hosts the bus. What a ZeroMQ bus's host process
does besides (storing the spans every process publishes, ``[tracing] collect``) falls to
one process per machine and project: the one holding ``.loom/nats-host.lock``. When it
ends, another process of the project takes the lock (it looks every ``[bus] lost_after``
seconds) and stores the spans from then on. The event log is JetStream's stream
(:mod:`.jetstream`), not a file a process writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ...config import BusConfig
from ...security.guard import Access
from .client import NatsClient, NatsOptions

__all__ = ["NatsAddress", "NatsConnection", "nats_options", "open_nats"]

log = logging.getLogger("loom.runtime")
HOST_LOCK = ".loom/nats-host.lock"


@dataclass(frozen=True)
class NatsAddress:
    """Where a NATS bus is: its servers (``publish`` and ``subscribe`` name them all, as a
    ZeroMQ :class:`~loom_kernel.bus.zeromq.BusAddress` names its two endpoints)."""

    servers: tuple[str, ...]

    @property
    def publish(self) -> str:
        return ", ".join(self.servers)

    @property
    def subscribe(self) -> str:
        return self.publish


def nats_options(
    settings: BusConfig, project_dir: Path, servers: list[str] | None = None
) -> NatsOptions:
    """The client's options from ``[bus]`` (files relative to the project's folder; the
    password and token from ``$LOOM_NATS_PASSWORD`` and ``$LOOM_NATS_TOKEN``)."""

    def path(value: str | None) -> Path | None:
        return project_dir / value if value else None

    return NatsOptions(
        servers=list(servers or settings.servers),
        credentials=path(settings.credentials),
        nkey=path(settings.nkey),
        token=os.environ.get("LOOM_NATS_TOKEN") or None,
        user=settings.user,
        password=os.environ.get("LOOM_NATS_PASSWORD"),
        tls_ca=path(settings.tls_ca),
        tls_cert=path(settings.tls_cert),
        tls_key=path(settings.tls_key),
    )


@dataclass(eq=False)
class NatsConnection:
    """A process's place on a NATS bus (see the module docstring)."""

    client: NatsClient
    address: NatsAddress
    project_dir: Path
    settings: BusConfig = field(default_factory=BusConfig)
    access: Access = field(default_factory=Access)
    #: Always None: NATS is the broker, and Loom does not run it.
    broker: None = None
    takeovers: int = 0
    _lock: IO[bytes] | None = field(default=None, repr=False)
    _watch: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def embedded(self) -> bool:
        """True while this process stores the project's spans (it holds the host lock)."""
        return self._lock is not None

    def take_host_lock(self) -> bool:
        """Take the project's host lock if it is free; True if this process holds it."""
        if self._lock is not None:
            return True
        path = self.project_dir / HOST_LOCK
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        self._lock = handle
        return True

    def watch(self, on_host: Callable[[], Awaitable[None]] | None = None) -> None:
        """Take the host lock when its holder ends, then await ``on_host()``."""
        if self._lock is None:
            self._watch = asyncio.get_running_loop().create_task(
                self._keep(on_host), name="loom:nats-host"
            )

    async def _keep(self, on_host: Callable[[], Awaitable[None]] | None) -> None:
        # a file lock tells nobody when it is free: look again every lost_after seconds
        while not self.take_host_lock():  # noqa: ASYNC110
            await asyncio.sleep(self.settings.lost_after)
        self.takeovers += 1
        log.warning("this process stores the project's spans now (the one before it ended)")
        if on_host is not None:
            try:
                await on_host()
            except Exception:
                log.exception("this process took the host lock but its on_host hook failed")

    async def aclose(self) -> None:
        task, self._watch = self._watch, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.aclose()
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None


async def open_nats(
    settings: BusConfig,
    project_dir: Path,
    *,
    servers: list[str] | None = None,
    name: str = "rt",
    on_host: Callable[[], Awaitable[None]] | None = None,
) -> NatsConnection:
    """Connect to ``[bus] servers`` (or ``servers``); take the host lock if it is free,
    else watch it (mode ``auto``; mode ``connect``, a command's, stores nothing).

    Raises:
        BusError: no NATS server answered within ``[bus] connect_timeout``.
    """
    options = nats_options(settings, project_dir, servers)
    client = NatsClient(
        options,
        name=name,
        max_message_size=settings.max_message_size,
        local_delivery=settings.local_delivery,
    )
    await client.connect(settings.connect_timeout)
    connection = NatsConnection(client, NatsAddress(tuple(options.servers)), project_dir, settings)
    if settings.mode == "connect":  # a command that only looks: it stores nothing
        return connection
    if not connection.take_host_lock() and settings.mode == "auto":
        connection.watch(on_host)
    return connection
