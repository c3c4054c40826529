"""How a process gets onto its project's bus, whichever carries it (``[bus] backend``).

``zeromq`` (the default): join the project's running broker or embed one
(:func:`~loom_kernel.bus.zeromq.open_bus`); ``nats``: connect to ``[bus] servers``
(:func:`~loom_kernel.bus.nats.connection.open_nats`). A ``nats://`` or ``tls://`` URL
(``[bus] url``, ``Runtime(bus_url=...)``, ``--bus``) means NATS whatever the backend says.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from .._bus_config import NATS_SCHEMES
from ..config import BusConfig
from ..security.guard import Access
from .nats.client import NatsClient
from .nats.connection import NatsAddress, NatsConnection, open_nats
from .zeromq.address import BusAddress
from .zeromq.client import BusClient
from .zeromq.connect import open_bus
from .zeromq.connection import BusConnection

__all__ = ["Address", "Client", "Connection", "connect_bus", "uses_nats"]

#: A process's place on the bus: a ZeroMQ or a NATS one.
Connection = BusConnection | NatsConnection
#: Its client (the transport the runtime wraps), and where the bus is.
Client = BusClient | NatsClient
Address = BusAddress | NatsAddress


def uses_nats(settings: BusConfig, url: str | None = None) -> bool:
    """Whether these settings (or this URL, which wins) name a NATS bus."""
    url = url or settings.url
    if url is not None:
        return url.partition("://")[0] in NATS_SCHEMES
    return settings.backend == "nats"


async def connect_bus(
    settings: BusConfig,
    project_dir: Path,
    *,
    url: str | None = None,
    name: str = "rt",
    on_host: Callable[[], Awaitable[None]] | None = None,
    access: Access | None = None,
) -> Connection:
    """Join the project's bus as ``settings`` say (``url`` overrides them).

    Raises:
        BusError: the bus does not answer (the message says what to start).
    """
    if uses_nats(settings, url):
        nats_url = url or settings.url
        servers = [nats_url] if nats_url else None
        return await open_nats(settings, project_dir, servers=servers, name=name, on_host=on_host)
    return await open_bus(settings, project_dir, url=url, name=name, on_host=on_host, access=access)
