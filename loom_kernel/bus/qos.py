"""Quality of service: the mailbox between the bus and a subscriber.

- ``realtime``: bounded; when full the oldest event is dropped and counted.
- ``reliable``: every event kept in order; per-source sequence gaps are detected
  by the client and reported here. The bound is a safety net against unbounded
  memory: overflowing it is counted as a drop and logged as an error.
- ``batched``: the consumer gets lists of up to ``max_size`` events, flushed after
  ``max_delay`` seconds at most.

A mailbox is filled synchronously by the client's receive loop and drained by one
consumer task; nothing here ever blocks the receive loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["QOS_NAMES", "Mailbox", "MailboxClosed", "MailboxStatistics", "QoS", "make_mailbox"]

QoS = Literal["realtime", "reliable", "batched"]
QOS_NAMES = ("realtime", "reliable", "batched")
log = logging.getLogger("loom.qos")


@dataclass(frozen=True)
class MailboxStatistics:
    qos: str
    depth: int
    max_depth: int
    received: int
    dropped: int
    gaps: int
    lost: int

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


class Mailbox:
    """FIFO between the receive loop (``put_nowait``) and one consumer (``get``)."""

    qos: str = "reliable"

    def __init__(self, maxsize: int):
        if maxsize < 1:
            raise ValueError(f"mailbox size must be at least 1, got {maxsize}")
        self._items: deque[Any] = deque()
        self._maxsize = maxsize
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.received = 0
        self.dropped = 0
        self.gaps = 0
        self.lost = 0
        self.max_depth = 0

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: Any) -> None:
        self.received += 1
        # push()'s body, inlined: this runs once per event in the receive loop
        if len(self._items) >= self._maxsize:
            self._overflow(item)
        else:
            self._items.append(item)
        depth = len(self._items)
        if depth > self.max_depth:
            self.max_depth = depth
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def put_many(self, items: list[Any]) -> None:
        """``put_nowait`` of each item, in order, with the consumer woken once (a batch
        from the receive loop). A mailbox that overrides ``put_nowait`` gets its own
        ``put_nowait`` called for each item."""
        if type(self).put_nowait is not Mailbox.put_nowait:
            for item in items:
                self.put_nowait(item)
            return
        self.received += len(items)
        queue = self._items
        room = self._maxsize - len(queue)
        if len(items) <= room:
            queue.extend(items)
        else:
            queue.extend(items[: max(room, 0)])
            for item in items[max(room, 0) :]:
                self._overflow(item)
        depth = len(queue)
        if depth > self.max_depth:
            self.max_depth = depth
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def push(self, item: Any) -> None:
        """Queue an item for the consumer without counting it as received (a mailbox
        that holds events back or replays them counts on arrival)."""
        if len(self._items) >= self._maxsize:
            self._overflow(item)
        else:
            self._items.append(item)
        depth = len(self._items)
        if depth > self.max_depth:
            self.max_depth = depth
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _overflow(self, item: Any) -> None:
        self.dropped += 1
        if self.dropped == 1 or self.dropped % 10_000 == 0:
            log.error(
                "%s mailbox full (%d events): %d dropped so far; the handler is too slow "
                "for its input (use qos='realtime' or 'batched', or raise mailbox_size)",
                self.qos,
                self._maxsize,
                self.dropped,
            )

    def note_gap(self, missing: int) -> None:
        """The client saw ``missing`` sequence numbers skipped on a matching stream."""
        self.gaps += 1
        self.lost += missing

    async def _wait(self) -> None:
        while not self._items:
            if self._closed:
                raise MailboxClosed
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def get(self) -> Any:
        """The next event; raises :class:`MailboxClosed` once closed and empty."""
        if not self._items:
            await self._wait()
        return self._items.popleft()

    def get_nowait(self) -> Any:
        """The next event; raises ``IndexError`` when empty."""
        return self._items.popleft()

    def close(self) -> None:
        self._closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def statistics(self) -> MailboxStatistics:
        return MailboxStatistics(
            qos=self.qos,
            depth=len(self._items),
            max_depth=self.max_depth,
            received=self.received,
            dropped=self.dropped,
            gaps=self.gaps,
            lost=self.lost,
        )


class MailboxClosed(Exception):
    """Raised by ``Mailbox.get`` once the subscription is closed and drained."""


class RealtimeMailbox(Mailbox):
    qos = "realtime"

    def _overflow(self, item: Any) -> None:
        self._items.popleft()
        self._items.append(item)
        self.dropped += 1


class BatchedMailbox(Mailbox):
    qos = "batched"

    def __init__(self, maxsize: int, max_size: int, max_delay: float):
        super().__init__(maxsize)
        if max_size < 1 or max_delay <= 0:
            raise ValueError("batched QoS needs max_size >= 1 and max_delay > 0")
        self.max_size = max_size
        self.max_delay = max_delay

    async def get(self) -> list[Any]:
        """A list of 1..max_size events: returned when full or ``max_delay`` after the first."""
        if not self._items:
            await self._wait()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_delay
        while len(self._items) < self.max_size and not self._closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._waiter = loop.create_future()
            try:
                await asyncio.wait_for(self._waiter, remaining)
            except TimeoutError:
                break
            finally:
                self._waiter = None
        count = min(self.max_size, len(self._items))
        return [self._items.popleft() for _ in range(count)]


def make_mailbox(
    qos: str,
    *,
    maxsize: int | None = None,
    max_size: int = 100,
    max_delay: float = 0.05,
    mailbox: Mailbox | None = None,
) -> Mailbox:
    """Build the mailbox for a QoS name; raises ``ValueError`` naming the valid ones.

    ``mailbox``, when given, is used as it is: a layer above the bus (a durable
    subscription, the event log's intake) brings its own.
    """
    if mailbox is not None:
        if mailbox.qos != qos:
            raise ValueError(f"a {mailbox.qos} mailbox cannot serve qos {qos!r}")
        return mailbox
    if qos == "realtime":
        return RealtimeMailbox(10_000 if maxsize is None else maxsize)
    if qos == "reliable":
        return Mailbox(1_000_000 if maxsize is None else maxsize)
    if qos == "batched":
        return BatchedMailbox(1_000_000 if maxsize is None else maxsize, max_size, max_delay)
    raise ValueError(f"unknown qos {qos!r}: use one of {', '.join(QOS_NAMES)}")
