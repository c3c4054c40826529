"""The bus layer: how envelopes travel between processes.

- :mod:`.transport`: the :class:`Transport` seam (publish, subscribe, replies),
  :class:`Subscription` and :class:`ReplyBox`;
- :mod:`.dispatch`: routing of received envelopes, shared by every transport;
- :mod:`.qos`: the mailboxes behind ``realtime``, ``reliable`` and ``batched``;
- :mod:`.zeromq`: the ZeroMQ implementation (broker, client, discovery, joining).

Imports only the protocol layer below it.
"""

from .dispatch import Dispatcher
from .qos import QOS_NAMES, Mailbox, MailboxStatistics, make_mailbox
from .transport import ClientStatistics, ReplyBox, Subscription, Transport
from .zeromq import (
    Broker,
    BrokerStatistics,
    BusAddress,
    BusClient,
    BusConnection,
    open_bus,
    read_discovery,
)

__all__ = [
    "QOS_NAMES",
    "Broker",
    "BrokerStatistics",
    "BusAddress",
    "BusClient",
    "BusConnection",
    "ClientStatistics",
    "Dispatcher",
    "Mailbox",
    "MailboxStatistics",
    "ReplyBox",
    "Subscription",
    "Transport",
    "make_mailbox",
    "open_bus",
    "read_discovery",
]
