"""The durability layer: the event log, durable subscriptions, reliable publishing, replay.

- :mod:`.store`: :class:`EventLog`, the SQLite file of recorded events and cursors,
  and its queries (``EventLog.query(since, until, topics)``);
- :mod:`.service`: :class:`EventLogService`, which records the bus into it and
  answers subscribers and publishers on ``loom.eventlog.*``;
- :mod:`.subscriber`: durable ``reliable`` subscriptions (cursor, gap repair, dedup);
- :mod:`.publisher`: reliable publishing (acks from the log, events sent again);
- :mod:`.durable`: :class:`DurableTransport`, the transport that combines both;
- :mod:`.namespace` and :mod:`.replay`: replay namespaces, and replaying into them;
- :mod:`.wire`: what travels on ``loom.eventlog.*``.

Imports only the bus and protocol layers below it (``docs/durability.md``).
"""

from .durable import DurableTransport
from .namespace import NamespacedTransport
from .publisher import AckTracker
from .replay import REPLAYED_TS_HEADER, ReplayPlan, ReplayResult, replay
from .service import DEFAULT_EXCLUDE, EventLogService, EventLogServiceStatistics, open_event_log
from .store import EventLog, EventLogStatistics, LoggedEvent, When
from .subscriber import DurableMailbox, DurableStatistics
from .wire import ACK_HEADER, epoch_of

__all__ = [
    "ACK_HEADER",
    "DEFAULT_EXCLUDE",
    "REPLAYED_TS_HEADER",
    "AckTracker",
    "DurableMailbox",
    "DurableStatistics",
    "DurableTransport",
    "EventLog",
    "EventLogService",
    "EventLogServiceStatistics",
    "EventLogStatistics",
    "LoggedEvent",
    "NamespacedTransport",
    "ReplayPlan",
    "ReplayResult",
    "When",
    "epoch_of",
    "open_event_log",
    "replay",
]
