"""The ZeroMQ bus: an XSUB/XPUB broker, the asyncio client (the first
:class:`~loom_kernel.bus.Transport`), and how a process finds or starts its project's bus."""

from .address import BusAddress
from .broker import Broker, BrokerStatistics
from .client import BusClient
from .connect import BusConnection, open_bus
from .discovery import (
    DiscoveryRecord,
    discovery_lock,
    read_discovery,
    remove_discovery,
    write_discovery,
)

__all__ = [
    "Broker",
    "BrokerStatistics",
    "BusAddress",
    "BusClient",
    "BusConnection",
    "DiscoveryRecord",
    "discovery_lock",
    "open_bus",
    "read_discovery",
    "remove_discovery",
    "write_discovery",
]
