"""The ZeroMQ bus: an XSUB/XPUB broker, the asyncio client (the first
:class:`~loom_kernel.bus.Transport`), and how a process finds or starts its project's bus."""

from .address import BusAddress
from .broker import Broker, BrokerStatistics, broker_for
from .client import BusClient
from .connect import open_bus
from .connection import BusConnection
from .discovery import (
    DiscoveryRecord,
    discovery_lock,
    read_discovery,
    read_record,
    remove_discovery,
    write_discovery,
)
from .listeners import Listeners

__all__ = [
    "Broker",
    "BrokerStatistics",
    "BusAddress",
    "BusClient",
    "BusConnection",
    "DiscoveryRecord",
    "Listeners",
    "broker_for",
    "discovery_lock",
    "open_bus",
    "read_discovery",
    "read_record",
    "remove_discovery",
    "write_discovery",
]
