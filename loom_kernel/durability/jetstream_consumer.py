"""A durable subscription on NATS: a JetStream pull consumer feeding a mailbox.

- The consumer is durable (named after the agent and its pattern): it survives the
  agent's restarts and keeps what the agent has not acknowledged, on every replica;
- a fetch task pulls batches while the mailbox has room (the mailbox never drops);
- an event is acknowledged once its handler has finished (when the handler asks for the
  next one, as with the event log's durable mailbox), so what a crashed or killed
  process did not finish is delivered again (after the consumer's ``ack_wait``);
- JetStream delivers at least once: a redelivery whose ack was lost (a consumer leader
  killed mid-stream) is dropped here. The stream sequence numbers handled lately are
  kept in memory and in a small journal (:class:`~.journal.CursorJournal`, a memory
  mapped file) so that a process killed between a handler's end and its ack does not
  handle that event twice when it comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ..bus.nats.codec import decode_message
from ..bus.qos import Mailbox, MailboxStatistics
from ..errors import ProtocolError, TopicError
from ..protocol.envelope import Envelope
from .journal import CursorJournal

__all__ = ["HandledSequences", "JetStreamMailbox", "JetStreamStatistics", "fetch_into"]

log = logging.getLogger("loom.eventlog")
_REMEMBERED = 100_000  # stream sequence numbers handled, kept in memory for dedup
_RING = 256  # of which the journal keeps the newest (a kill's window is one or two)
_FETCH = 1000  # messages per fetch
_ROOM = 2 * _FETCH  # the fetch task waits while the mailbox holds this many


class HandledSequences:
    """The stream sequence numbers a consumer handled lately (in memory, and a ring of
    the newest in the journal, which outlives a ``kill -9``)."""

    def __init__(self, journal: CursorJournal | None):
        self.journal = journal
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._slot = 0
        if journal is not None:
            for (_, slot, _), seq in journal.positions().items():
                self._seen[seq] = None
                self._slot = max(self._slot, int(slot) + 1) % _RING

    def __contains__(self, seq: int) -> bool:
        return seq in self._seen

    def add(self, seq: int) -> None:
        self._seen[seq] = None
        if len(self._seen) > _REMEMBERED:
            self._seen.popitem(last=False)
        if self.journal is not None:
            self.journal.mark(("jetstream", str(self._slot), ""), seq)
            self._slot = (self._slot + 1) % _RING


@dataclass(frozen=True)
class JetStreamStatistics(MailboxStatistics):
    consumer: str = ""
    redelivered: int = 0
    duplicates: int = 0
    acked: int = 0


class JetStreamMailbox(Mailbox):
    """The mailbox of a durable NATS subscription (see the module docstring)."""

    qos = "reliable"

    def __init__(self, maxsize: int, consumer: str, handled: HandledSequences):
        super().__init__(maxsize)
        self.consumer = consumer
        self.handled = handled
        self.redelivered = self.duplicates = self.acked = 0
        self.room = asyncio.Event()
        self.room.set()
        self._current: tuple[Envelope, Any, int] | None = None
        self._acks = _Acks()

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, env: Envelope, msg: Any, seq: int) -> None:
        """A fetched message (``seq``: its stream sequence number)."""
        self.received += 1
        if msg.metadata.num_delivered > 1:
            self.redelivered += 1
        self.push((env, msg, seq))
        if len(self._items) >= _ROOM:
            self.room.clear()

    async def get(self) -> Any:
        self._finish()
        while True:
            if not self._items:
                await self._wait()
            env, msg, seq = self._items.popleft()
            if len(self._items) < _ROOM // 2:
                self.room.set()
            if seq in self.handled:  # delivered again after its handler had finished
                self.duplicates += 1
                self._acks.add(msg)
                continue
            self._current = (env, msg, seq)
            return env

    def get_nowait(self) -> Any:
        raise IndexError("a durable NATS subscription is read with `get` (it acknowledges)")

    def _finish(self) -> None:
        """The handler of the event handed out last has finished: remember it, ack it."""
        current, self._current = self._current, None
        if current is not None:
            _, msg, seq = current
            self.handled.add(seq)
            self._acks.add(msg)
            self.acked += 1

    def close(self) -> None:
        super().close()
        self.room.set()

    def statistics(self) -> JetStreamStatistics:
        base = super().statistics()
        return JetStreamStatistics(
            **base.to_dict(), consumer=self.consumer, redelivered=self.redelivered,
            duplicates=self.duplicates, acked=self.acked,
        )  # fmt: skip


class _Acks:
    """Acknowledgements waiting to leave: one task sends every ack queued in a turn of the
    loop (a task per ack would cost more than the ack itself)."""

    def __init__(self) -> None:
        self.waiting: list[Any] = []
        self.task: asyncio.Task[None] | None = None

    def add(self, msg: Any) -> None:
        self.waiting.append(msg)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while self.waiting:
            batch, self.waiting = self.waiting, []
            for msg in batch:
                try:
                    await msg.ack()
                except Exception as exc:  # the consumer will deliver it again: dedup then
                    log.debug("an ack was not sent: %s", exc)


async def fetch_into(pull: Any, mailbox: JetStreamMailbox, retry: float = 0.5) -> None:
    """Pull batches into ``mailbox`` while it has room, until it closes; a consumer or
    stream leader being elected (a node lost) is waited out."""
    import nats.errors
    import nats.js.errors

    waiting = (TimeoutError, nats.errors.TimeoutError)
    passing = (nats.js.errors.ServiceUnavailableError, nats.js.errors.APIError,
               nats.errors.NoRespondersError, nats.errors.ConnectionClosedError,
               nats.errors.SlowConsumerError)  # fmt: skip
    while not mailbox.closed:
        await mailbox.room.wait()
        try:
            messages = await pull.fetch(_FETCH, timeout=1.0)
        except waiting:
            continue
        except passing as exc:
            log.info("durable %s: %s; fetching again", mailbox.consumer, type(exc).__name__)
            await asyncio.sleep(retry)
            continue
        for msg in messages:
            _take(mailbox, msg)


def _take(mailbox: JetStreamMailbox, msg: Any) -> None:
    try:
        env = decode_message(msg.subject, msg.data, msg.headers)
    except (ProtocolError, TopicError, RecursionError) as exc:
        log.warning("durable %s: dropped a malformed message: %s", mailbox.consumer, exc)
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().create_task(msg.term())
        return
    mailbox.offer(env, msg, msg.metadata.sequence.stream)
