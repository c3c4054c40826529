"""The runtime's side of durability: the transport its endpoints use, and the event log
it runs when it runs the bus (``docs/durability.md``)."""

from __future__ import annotations

from ..bus.nats.client import NatsClient
from ..bus.transport import Transport
from ..config import LoomConfig
from ..durability.durable import DurableTransport
from ..durability.jetstream import JetStreamTransport
from ..durability.namespace import NamespacedTransport
from ..durability.service import EventLogService, open_event_log
from ..durability.store import EventLog

__all__ = ["EventLogHost", "endpoint_transport"]


async def endpoint_transport(
    client: Transport, config: LoomConfig, namespace: str | None
) -> Transport:
    """What a runtime's endpoints publish and subscribe through: a replay namespace's
    view of the bus, the event log's durable transport (JetStream's, on NATS), or the
    client itself."""
    if namespace is not None:
        return NamespacedTransport(client, namespace)
    if config.eventlog.enabled and isinstance(client, NatsClient):
        journal = config.eventlog.journal
        stream = JetStreamTransport(
            client, config.eventlog, config.bus,
            journal_dir=config.project_path(journal) if journal else None,
        )  # fmt: skip
        await stream.start()
        return stream
    if config.eventlog.enabled:
        journal = config.eventlog.journal
        transport = DurableTransport(
            client, config.eventlog, journal_dir=config.project_path(journal) if journal else None
        )
        await transport.start()
        return transport
    return client


class EventLogHost:
    """The event log service of the process that runs the bus, and the log file for
    queries (any process may read it)."""

    def __init__(self, config: LoomConfig):
        self.config = config
        self.service: EventLogService | None = None
        self._log: EventLog | None = None

    @property
    def path(self) -> str:
        return str(self.config.project_path(self.config.eventlog.path))

    async def start(self, client: Transport) -> EventLogService | None:
        """Record the bus (once; not when ``[eventlog] enabled`` or ``embedded`` is off)."""
        settings = self.config.eventlog
        if self.service is None and settings.enabled and settings.embedded:
            self.service = await open_event_log(settings, self.path, client)
        return self.service

    @property
    def log(self) -> EventLog:
        if self._log is None:
            self._log = EventLog(self.path, synchronous=self.config.eventlog.synchronous)
        return self._log

    async def aclose(self) -> None:
        if self.service is not None:
            await self.service.aclose()
        if self._log is not None:
            self._log.close()
