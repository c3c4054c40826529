"""How a process gets onto its project's bus: join the running one, or embed one.

``[bus] mode = "auto"`` (the default) first tries to join a running bus (``[bus] url``,
or the one ``.loom/bus.json`` names if its process is alive; 1 s to answer) and starts
a broker on a thread of this process when none answers; ``"embedded"`` always starts
one, ``"connect"`` only joins. "Is there a bus? If not, start one" runs under an
inter-process lock, so processes starting together end up on one bus. A record whose
process died names the address the bus is taken over at (see ``connection.py``): the
process that starts then hosts the project's bus where the others wait for it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import zmq

from ...config import BusConfig
from ...errors import BusError
from ...security import ClientCurve, client_curve, keys_folder
from ...security.guard import Access
from .address import BusAddress
from .broker import Broker, broker_for
from .client import BusClient
from .connection import SETTLE, BusConnection
from .discovery import discovery_lock, read_discovery, read_record, write_discovery
from .listeners import Listeners

__all__ = ["BusConnection", "open_bus"]

log = logging.getLogger("loom.runtime")
_DISCOVERY_TIMEOUT = 1.0


async def open_bus(
    settings: BusConfig,
    project_dir: Path,
    *,
    url: str | None = None,
    name: str = "rt",
    on_host: Callable[[], Awaitable[None]] | None = None,
    access: Access | None = None,
) -> BusConnection:
    """Join or embed the project's bus as ``settings`` say (``url`` overrides them); a
    broker this process hosts applies ``access`` (``[acl.*]``, ``[tenants.*]``).

    In mode ``auto`` with ``[bus] takeover`` on, the connection then takes the bus over
    if its host dies, awaiting ``on_host()`` when it does (``connection.py``).

    Raises:
        BusError: the named bus does not answer, or an embedded one cannot bind.
    """
    access = access or Access()
    if url is not None:
        return await _join(
            settings, BusAddress.parse(url), settings.connect_timeout, project_dir, name
        )
    if settings.mode == "connect":
        address, beating = _running(settings, project_dir)
        return await _join(
            settings, address, settings.connect_timeout, project_dir, name, beating=beating
        )
    async with discovery_lock(project_dir):
        connection = None
        if settings.mode == "auto":
            connection = await _try_join_running(settings, project_dir, name)
        if connection is None:
            connection = await _embed(settings, project_dir, name, access)
    connection.access = access
    if settings.mode == "auto" and settings.takeover:
        connection.watch(on_host)
    return connection


def _running(settings: BusConfig, project_dir: Path) -> tuple[BusAddress, bool]:
    """The bus to join, and whether it is known to beat."""
    if settings.url is not None:
        return BusAddress.parse(settings.url), False
    record = read_discovery(project_dir)
    if record is None:
        raise BusError(
            f'[bus] mode = "connect" but no bus runs for {project_dir} '
            "and [bus] url is unset: start one with `loom bus`"
        )
    return record.address, record.beat is not None


async def _try_join_running(
    settings: BusConfig, project_dir: Path, name: str
) -> BusConnection | None:
    beating = False
    if settings.url is not None:
        candidate = BusAddress.parse(settings.url)
    else:
        record = read_discovery(project_dir)
        if record is None:
            return None
        candidate, beating = record.address, record.beat is not None
    try:
        return await _join(
            settings, candidate, _DISCOVERY_TIMEOUT, project_dir, name, beating=beating
        )
    except BusError:
        log.info("no bus answered at %s; starting an embedded one", candidate.publish)
        return None


async def _join(
    settings: BusConfig,
    address: BusAddress,
    timeout: float,
    project_dir: Path,
    name: str,
    *,
    beating: bool = False,
) -> BusConnection:
    client = BusClient(
        address,
        name=name,
        hwm=settings.hwm,
        max_message_size=settings.max_message_size,
        lost_after=settings.lost_after,
        beating=beating,
        batching=settings.batching,
        local_delivery=settings.local_delivery,
        curve=_client_curve(settings, project_dir),
    )
    await client.connect(timeout)
    return BusConnection(client, address, None, project_dir, settings)


async def _embed(
    settings: BusConfig, project_dir: Path, name: str, access: Access
) -> BusConnection:
    context = zmq.Context.instance()
    local = BusAddress.parse(f"inproc://loom-bus-{os.getpid()}-{os.urandom(4).hex()}")
    # the host's client sends nothing no other client subscribes to: the broker counts
    listeners = Listeners() if settings.filter_at_source and settings.local_delivery else None
    broker, tcp_bound = _start_broker(settings, project_dir, local, context, access, listeners)
    try:
        client = BusClient(
            broker.addresses[0],
            name=name,
            context=context,
            hwm=settings.hwm,
            max_message_size=settings.max_message_size,
            lost_after=settings.lost_after,
            beating=True,
            batching=settings.batching,
            local_delivery=settings.local_delivery,
            curve=_client_curve(settings, project_dir),  # for a move to tcp (takeover)
            listeners=listeners,
        )
        await client.connect(settings.connect_timeout)
    except BaseException:
        broker.close()
        raise
    write_discovery(project_dir, tcp_bound, "embedded", broker.beat_interval)
    log.info(
        "embedded bus at %s (publish) / %s (subscribe)", tcp_bound.publish, tcp_bound.subscribe
    )
    return BusConnection(client, tcp_bound, broker, project_dir, settings)


def _start_broker(
    settings: BusConfig,
    project_dir: Path,
    local: BusAddress,
    context: zmq.Context,
    access: Access,
    listeners: Listeners | None,
) -> tuple[Broker, BusAddress]:
    """A broker on ``local`` and TCP: ``[bus] url``, else the address of a bus whose
    process died (its clients wait there), else free loopback ports."""
    record = read_record(project_dir) if settings.url is None and settings.takeover else None
    if record is not None and not record.alive and record.address.publish.startswith("tcp://"):
        broker = broker_for(
            settings, [local, record.address], context,
            project_dir=project_dir, access=access, listeners=listeners,
        )  # fmt: skip
        try:
            _, tcp_bound = broker.start(settle=SETTLE)
        except BusError as exc:
            log.warning("cannot host the bus where it was (%s): picking free ports", exc)
        else:
            log.info("hosting the project's bus where its dead host had it")
            return broker, tcp_bound
    tcp = BusAddress.parse(settings.url or "tcp://127.0.0.1:0")
    broker = broker_for(
        settings, [local, tcp], context,
        project_dir=project_dir, access=access, listeners=listeners,
    )  # fmt: skip
    _, tcp_bound = broker.start()
    return broker, tcp_bound


def _client_curve(settings: BusConfig, project_dir: Path) -> ClientCurve | None:
    folder = keys_folder(settings.keys, project_dir)
    return client_curve(settings.security, folder, settings.identity)
