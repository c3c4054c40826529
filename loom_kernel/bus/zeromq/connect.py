"""How a process gets onto its project's bus: join the running one, or embed one.

``[bus] mode = "auto"`` (the default) first tries to join a running bus (``[bus] url``,
or the one ``.loom/bus.json`` names if its process is alive; 1 s to answer) and starts
a broker on a thread of this process when none answers; ``"embedded"`` always starts
one, ``"connect"`` only joins. "Is there a bus? If not, start one" runs under an
inter-process lock, so processes starting together end up on one bus.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import zmq

from ...config import BusConfig
from ...errors import BusError
from .address import BusAddress
from .broker import Broker
from .client import BusClient
from .discovery import discovery_lock, read_discovery, remove_discovery, write_discovery

__all__ = ["BusConnection", "open_bus"]

log = logging.getLogger("loom.runtime")
_DISCOVERY_TIMEOUT = 1.0


@dataclass
class BusConnection:
    """A process's place on the bus: its client, and the broker when it runs one."""

    client: BusClient
    #: The address other processes use (the TCP one when this process embeds the bus).
    address: BusAddress
    broker: Broker | None
    project_dir: Path

    @property
    def embedded(self) -> bool:
        return self.broker is not None

    async def aclose(self) -> None:
        """Close the client, then stop the broker if this process runs it."""
        await self.client.aclose()
        if self.broker is not None:
            remove_discovery(self.project_dir)
            self.broker.close()


async def open_bus(
    settings: BusConfig, project_dir: Path, *, url: str | None = None, name: str = "rt"
) -> BusConnection:
    """Join or embed the project's bus as ``settings`` say (``url`` overrides them).

    Raises:
        BusError: the named bus does not answer, or an embedded one cannot bind.
    """
    if url is not None:
        return await _join(
            settings, BusAddress.parse(url), settings.connect_timeout, project_dir, name
        )
    if settings.mode == "connect":
        return await _join(
            settings, _running(settings, project_dir), settings.connect_timeout, project_dir, name
        )
    async with discovery_lock(project_dir):
        if settings.mode == "auto":
            joined = await _try_join_running(settings, project_dir, name)
            if joined is not None:
                return joined
        return await _embed(settings, project_dir, name)


def _running(settings: BusConfig, project_dir: Path) -> BusAddress:
    if settings.url is not None:
        return BusAddress.parse(settings.url)
    record = read_discovery(project_dir)
    if record is None:
        raise BusError(
            f'[bus] mode = "connect" but no bus runs for {project_dir} '
            "and [bus] url is unset: start one with `loom bus`"
        )
    return record.address


async def _try_join_running(
    settings: BusConfig, project_dir: Path, name: str
) -> BusConnection | None:
    if settings.url is not None:
        candidate = BusAddress.parse(settings.url)
    else:
        record = read_discovery(project_dir)
        if record is None:
            return None
        candidate = record.address
    try:
        return await _join(settings, candidate, _DISCOVERY_TIMEOUT, project_dir, name)
    except BusError:
        log.info("no bus answered at %s; starting an embedded one", candidate.publish)
        return None


async def _join(
    settings: BusConfig, address: BusAddress, timeout: float, project_dir: Path, name: str
) -> BusConnection:
    client = BusClient(
        address, name=name, hwm=settings.hwm, max_message_size=settings.max_message_size
    )
    await client.connect(timeout)
    return BusConnection(client, address, None, project_dir)


async def _embed(settings: BusConfig, project_dir: Path, name: str) -> BusConnection:
    context = zmq.Context.instance()
    tcp = BusAddress.parse(settings.url or "tcp://127.0.0.1:0")
    local = BusAddress.parse(f"inproc://loom-bus-{os.getpid()}-{os.urandom(4).hex()}")
    broker = Broker(
        [local, tcp], context=context, hwm=settings.hwm, max_message_size=settings.max_message_size
    )
    local_bound, tcp_bound = broker.start()
    try:
        client = BusClient(
            local_bound,
            name=name,
            context=context,
            hwm=settings.hwm,
            max_message_size=settings.max_message_size,
        )
        await client.connect(settings.connect_timeout)
    except BaseException:
        broker.close()
        raise
    write_discovery(project_dir, tcp_bound, "embedded")
    log.info(
        "embedded bus at %s (publish) / %s (subscribe)", tcp_bound.publish, tcp_bound.subscribe
    )
    return BusConnection(client, tcp_bound, broker, project_dir)
