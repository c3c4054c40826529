"""The transport seam: what the layers above need from a bus, whatever carries it.

A :class:`Transport` is one process's connection to the bus: it publishes envelopes,
holds live :class:`Subscription` s (each with its QoS mailbox) and routes replies to
:class:`ReplyBox` es by correlation id. The ZeroMQ client
(:class:`~loom_kernel.bus.zeromq.client.BusClient`) is the first implementation; the
routing rules every implementation shares live in :mod:`.dispatch`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..errors import BusError
from ..protocol.envelope import Envelope
from ..protocol.topics import Pattern
from .qos import Mailbox, MailboxClosed, MailboxStatistics

__all__ = ["ClientStatistics", "ReplyBox", "Subscription", "Transport"]


@dataclass(frozen=True)
class ClientStatistics:
    """Counters of one transport since it connected."""

    client_id: str
    published: int
    received: int
    delivered: int
    malformed: int
    lost: int
    gaps: int
    expired: int
    late_replies: int
    oversized: int = 0
    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    #: The bus as this client sees it: ``{"state": "up" | "lost", "epoch", "lost",
    #: "failovers", "last_outage_ms"}`` (empty for a transport that does not watch it).
    bus: dict[str, Any] = field(default_factory=dict)
    #: Reliable publishing through the event log: ``{"in_flight", "acked", "resent"}``
    #: (empty for a transport that does not do it; see ``docs/durability.md``).
    durability: dict[str, Any] = field(default_factory=dict)
    #: Events this transport delivered to its own subscriptions in process, its own events
    #: that came back from the broker and were dropped unread, batch messages it sent,
    #: and its own events it did not send because no other client subscribed to them.
    local: int = 0
    echoes: int = 0
    batches: int = 0
    unheard: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@runtime_checkable
class Transport(Protocol):
    """One process's connection to the bus (see the module docstring)."""

    client_id: str
    connected: bool

    async def connect(self, timeout: float = 5.0) -> None:
        """Return once events published from here come back; raise ``BusError`` if not."""
        ...

    async def aclose(self) -> None:
        """Close every subscription and the connection (idempotent)."""
        ...

    def publish(self, env: Envelope) -> None:
        """Send an envelope now (fills ``id``, ``ts`` and ``seq`` when unset); never blocks."""
        ...

    def new_id(self) -> str:
        """A new event id, unique across processes (the transport may know its own ids:
        the ZeroMQ client delivers its own events in process, see ``client.py``)."""
        ...

    async def subscribe(
        self,
        pattern: str,
        *,
        qos: str = "reliable",
        owner: str = "",
        timeout: float = 5.0,
        **mailbox_options: Any,
    ) -> Subscription:
        """A subscription, live on the whole bus when this returns."""
        ...

    async def unsubscribe(self, sub: Subscription) -> None: ...

    def inbox(self, owner: str) -> str:
        """The reply topic of one owner (an agent id) of this transport."""
        ...

    def expect_replies(
        self, inbox: str, correlation_id: str, box: ReplyBox | None = None
    ) -> ReplyBox:
        """Route replies to ``inbox`` carrying ``correlation_id`` into a box until ``forget``."""
        ...

    def forget(self, inbox: str, correlation_id: str) -> None: ...

    def statistics(self) -> ClientStatistics: ...


class Subscription:
    """A live subscription: iterate it for events (lists of events for ``batched``).

    >>> async with await ctx.subscribe("market.price.*") as sub:   # doctest: +SKIP
    ...     async for event in sub: ...
    """

    def __init__(self, transport: Transport, pattern: Pattern, mailbox: Mailbox, owner: str):
        #: The transport the subscription was made through (``aclose`` goes back to it).
        self.transport = transport
        self.pattern = pattern
        self.mailbox = mailbox
        self.owner = owner
        self.closed = False
        #: What the consumer sees of each item (a replay namespace strips its prefix).
        self.view: Callable[[Any], Any] | None = None

    @property
    def qos(self) -> str:
        """The subscription's quality of service: ``realtime``, ``reliable`` or ``batched``."""
        return self.mailbox.qos

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        try:
            item = await self.mailbox.get()
        except MailboxClosed:
            raise StopAsyncIteration from None
        return item if self.view is None else self.view(item)

    async def get(self, timeout: float | None = None) -> Any:
        """The next event (or batch); raises ``TimeoutError`` after ``timeout`` seconds."""
        try:
            item = await asyncio.wait_for(self.mailbox.get(), timeout)
        except MailboxClosed:
            raise BusError(f"subscription {self.pattern.text!r} is closed") from None
        return item if self.view is None else self.view(item)

    def statistics(self) -> MailboxStatistics:
        """What the subscription's mailbox received, holds and dropped."""
        return self.mailbox.statistics()

    async def aclose(self) -> None:
        """Unsubscribe: no event is delivered to it afterwards."""
        await self.transport.unsubscribe(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<Subscription {self.pattern.text!r} qos={self.qos} owner={self.owner!r}>"


class ReplyBox:
    """Collects the replies that share one correlation id (or several: a fan-out)."""

    def __init__(self) -> None:
        self.items: deque[Envelope] = deque()
        self.error: BusError | None = None
        self._waiter: asyncio.Future[None] | None = None

    def put(self, env: Envelope) -> None:
        self.items.append(env)
        self._wake()

    def fail(self, error: BusError) -> None:
        """Give up waiting: the bus was lost, so :meth:`wait` raises ``error`` (replies
        already there are still returned first)."""
        self.error = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, deadline: float) -> bool:
        """Wait until an item is there or ``deadline`` (loop time) passes; True if one is.

        Raises:
            BusError: the transport lost the bus while waiting (see :meth:`fail`).
        """
        loop = asyncio.get_running_loop()
        while not self.items:
            if self.error is not None:
                raise self.error
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            self._waiter = loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, remaining)
            except TimeoutError:
                return bool(self.items)
            finally:
                self._waiter = None
        return True
