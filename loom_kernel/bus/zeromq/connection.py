"""A process's place on the bus, kept when the process hosting the bus dies (failover).

Every process of a project in ``[bus] mode = "auto"`` (with ``[bus] takeover`` on) watches
for the loss of its bus. When its client finds the bus lost (the broker's beats stopped:
:mod:`.health`), the connection takes the discovery lock and reads ``.loom/bus.json``:

- its process is alive and it is not us: someone else hosts the bus (it already took it
  over, or the host is alive but stuck). Nothing to do but wait; if that bus lives at
  another address (its old port was taken), the client moves there;
- otherwise (the host died, or closed and removed the file): this process starts a
  broker **at the same address** (the dead broker's ports are free again), writes the
  record with its own pid, and calls ``on_host`` (the runtime starts storing spans).

The lock makes it one winner: the processes that come after it find its record alive.
The other clients never reconnect by hand: ZeroMQ retries the same address every
100 ms, their SUB sockets re-send their subscriptions, and each client probes until its
own events come back. The new broker forwards nothing for :data:`SETTLE` seconds, so the
subscribers are back before the publishers' queued events flow (what was inside the
dead broker is lost, and receivers count it through sequence gaps). A process started
meanwhile finds the dead record and hosts the bus at that address itself
(``connect.py``), so the project never splits in two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ...config import BusConfig
from ...errors import BusError
from ...security.guard import Access
from .address import BusAddress
from .broker import Broker, broker_for
from .client import BusClient
from .discovery import discovery_lock, read_record, remove_discovery, write_discovery

__all__ = ["SETTLE", "BusConnection"]

log = logging.getLogger("loom.runtime")
#: Seconds a broker that replaces a dead one waits before forwarding: three reconnect
#: intervals of the clients (100 ms), so their subscriptions are back.
SETTLE = 0.3


@dataclass(eq=False)
class BusConnection:
    """A process's place on the bus: its client, and the broker when it runs one."""

    client: BusClient
    #: The address other processes use (the TCP one when this process embeds the bus).
    address: BusAddress
    broker: Broker | None
    project_dir: Path
    settings: BusConfig = field(default_factory=BusConfig)
    #: The project's ``[acl.*]`` and ``[tenants.*]``: a broker this process takes over applies them.
    access: Access = field(default_factory=Access)
    #: Bus takeovers this process did.
    takeovers: int = 0
    _failover: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def embedded(self) -> bool:
        """True while this process runs the bus's broker (from the start, or since a
        takeover)."""
        return self.broker is not None

    def watch(self, on_host: Callable[[], Awaitable[None]] | None = None) -> None:
        """Take the bus over whenever it is lost and no live process hosts it; awaits
        ``on_host()`` each time this process becomes the host."""
        self._failover = asyncio.get_running_loop().create_task(
            self._keep(on_host), name="loom:failover"
        )

    async def aclose(self) -> None:
        """Close the client, then stop the broker if this process runs it."""
        task, self._failover = self._failover, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.aclose()
        if self.broker is not None:
            remove_discovery(self.project_dir)
            self.broker.close()

    async def _keep(self, on_host: Callable[[], Awaitable[None]] | None) -> None:
        client = self.client
        retry = self.settings.lost_after
        while True:
            await client.wait_bus_lost()
            while client.bus_lost:
                try:
                    if await self.take_over() and on_host is not None:
                        await _hosting(on_host)
                except BusError as exc:  # e.g. its port was taken by another program
                    log.error("cannot take the bus over: %s; retrying in %g s", exc, retry)
                with contextlib.suppress(BusError):
                    await client.wait_bus(retry)

    async def take_over(self) -> bool:
        """Host the bus at its address unless a live process does; True if this one now does.

        Raises:
            BusError: the address cannot be bound.
        """
        async with discovery_lock(self.project_dir):
            record = read_record(self.project_dir)
            if self.broker is not None:
                return False
            if record is not None and record.alive and record.pid != os.getpid():
                if record.address != self.address:
                    log.warning("the bus moved to %s: following it", record.address.publish)
                    self.client.repoint(record.address)
                    self.address = record.address
                return False
            broker = broker_for(
                self.settings, [self.address], project_dir=self.project_dir, access=self.access
            )
            broker.start(settle=SETTLE)
            write_discovery(self.project_dir, self.address, "embedded", broker.beat_interval)
            self.broker = broker
        self.takeovers += 1
        log.warning(
            "took the bus over at %s / %s (its host process %s is gone)",
            self.address.publish, self.address.subscribe,
            record.pid if record is not None else "?",
        )  # fmt: skip
        return True


async def _hosting(on_host: Callable[[], Awaitable[None]]) -> None:
    try:
        await on_host()
    except Exception:  # the bus runs; what the host adds (the span store) may fail alone
        log.exception("this process took the bus over but its on_host hook failed")
