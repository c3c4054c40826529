"""The durable transport: a :class:`~loom_kernel.bus.Transport` with the event log behind it.

It wraps a process's transport (the runtime builds it when ``[eventlog] enabled``):

- ``subscribe(..., qos="reliable")`` on a user topic makes a durable subscription
  (:mod:`.subscriber`): named ``<owner>:<pattern>`` when its owner is an agent (its
  cursor survives restarts), unnamed otherwise (gaps repaired, no cursor);
- ``publish`` on a ``[eventlog] reliable`` topic keeps the event until the log
  acknowledges it (:mod:`.publisher`);
- everything else passes through unchanged, so other traffic costs what it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import msgspec

from ..bus.transport import ClientStatistics, Subscription, Transport
from ..bus.wrapper import TransportWrapper
from ..config import EventLogConfig
from ..errors import ConfigError, LoomError, LoomTimeoutError, TopicError
from ..protocol import reserved
from ..protocol.envelope import Envelope, encode_frames, new_id
from ..protocol.topics import compile_pattern
from .journal import CursorJournal
from .publisher import AckTracker
from .subscriber import DurableMailbox, Recovery
from .wire import ACK_HEADER, CONTENT_TYPE, Ack, Commit, Message, Store, decode, encode

__all__ = ["DurableTransport"]

log = logging.getLogger("loom.eventlog")
_OWNER = "durable"  # the inbox the event log answers this process's subscriptions in
_STORE_BATCH = 500  # events per message when sending unacknowledged ones again
_RELIABLE_CACHE = 50_000


class DurableTransport(TransportWrapper):
    """A transport whose reliable subscriptions and topics go through the event log.

    Args:
        inner: the process's transport (it stays the one that talks to the bus).
        settings: ``[eventlog]``.
        journal_dir: where agents' durable subscriptions keep their journal
            (:mod:`.journal`); None: none.

    Raises:
        ConfigError: a bad pattern in ``[eventlog] reliable``.
    """

    def __init__(
        self, inner: Transport, settings: EventLogConfig, *, journal_dir: Path | None = None
    ):
        super().__init__(inner)
        self.settings = settings
        self.journal_dir = journal_dir
        try:
            self._reliable = [compile_pattern(p) for p in settings.reliable]
        except TopicError as exc:
            raise ConfigError(f"[eventlog] reliable: {exc}") from None
        self._reliable_topics: dict[str, bool] = {}
        self.tracker = (
            AckTracker(settings.max_in_flight, settings.ack_timeout) if self._reliable else None
        )
        self._recoveries: dict[Subscription, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._ack_sub: Subscription | None = None

    async def connect(self, timeout: float = 5.0) -> None:
        await self.inner.connect(timeout)
        await self.start()

    async def start(self) -> None:
        """Listen for the log's acks (when this process publishes reliable topics)."""
        if self.tracker is None or self._ack_sub is not None:
            return
        self._ack_sub = await self.inner.subscribe(
            reserved.eventlog_ack(self.client_id), owner=_OWNER
        )
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._take_acks(self._ack_sub), name="loom:acks"))
        self._tasks.append(loop.create_task(self._resend(self.tracker), name="loom:resend"))

    async def aclose(self) -> None:
        """Wait (a little) for the log to acknowledge what waits and write the cursors
        of the durable subscriptions (the inner transport's owner closes it)."""
        if self.tracker is not None and self.tracker.in_flight:
            patience = 3 * self.settings.ack_timeout
            if not await self.tracker.wait_empty(patience):
                log.error(
                    "%d events on reliable topics were not acknowledged by the event log "
                    "within %g s and may be lost: is the log running?",
                    self.tracker.in_flight,
                    patience,
                )
        for sub in list(self._recoveries):
            await self.unsubscribe(sub)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def wait_acknowledged(self, timeout: float | None = None) -> None:
        """Return once the log has acknowledged every event published on a reliable topic.

        Raises:
            LoomTimeoutError: some are still waiting after ``timeout`` seconds.
        """
        tracker = self.tracker
        if tracker is not None and not await tracker.wait_empty(timeout):
            raise LoomTimeoutError(
                f"{tracker.in_flight} events on reliable topics are not acknowledged by the "
                f"event log after {timeout:g} s: is it running (the bus's process, or "
                "`loom log`)?"
            )

    # -- publishing ------------------------------------------------------------------

    def publish(self, env: Envelope) -> None:
        if self._reliable and self._is_reliable(env.topic):
            tracker = self.tracker
            if tracker is not None:
                tracker.check_room(env.topic)
                env.headers = {**(env.headers or {}), ACK_HEADER: self.inner.client_id}
                self.inner.publish(env)
                tracker.add(env)
                return
        self.inner.publish(env)

    def _is_reliable(self, topic: str) -> bool:
        verdict = self._reliable_topics.get(topic)
        if verdict is None:
            verdict = any(p.matches(topic) for p in self._reliable)
            if len(self._reliable_topics) >= _RELIABLE_CACHE:
                self._reliable_topics.clear()
            self._reliable_topics[topic] = verdict
        return verdict

    async def _take_acks(self, sub: Subscription) -> None:
        tracker = self.tracker
        async for env in sub:
            try:
                ack: Ack = decode(env.payload, Ack)
            except LoomError as exc:
                log.warning("bad ack from the event log: %s", exc)
                continue
            if tracker is not None:
                tracker.ack(ack.ranges)

    async def _resend(self, tracker: AckTracker) -> None:
        tick = min(self.settings.ack_timeout / 4, 0.25)
        while True:
            await asyncio.sleep(tick)
            due = tracker.overdue(time.monotonic())
            for start in range(0, len(due), _STORE_BATCH):
                frames = [encode_frames(env) for env in due[start : start + _STORE_BATCH]]
                store = Store(
                    [(topic.decode(), header, payload) for topic, header, payload in frames]
                )
                self._send(reserved.EVENTLOG_STORE, store, type="store")

    # -- subscribing -----------------------------------------------------------------

    async def subscribe(
        self,
        pattern: str,
        *,
        qos: str = "reliable",
        owner: str = "",
        timeout: float = 5.0,
        **mailbox_options: Any,
    ) -> Subscription:
        if qos != "reliable" or not self._durable(pattern):
            return await self.inner.subscribe(
                pattern, qos=qos, owner=owner, timeout=timeout, **mailbox_options
            )
        named = bool(owner) and owner != self.inner.client_id
        cursor = f"{owner}:{pattern}" if named else None
        mailbox = DurableMailbox(
            mailbox_options.get("maxsize") or 1_000_000,
            cursor=cursor,
            pattern=pattern,
            commit=self._commit,
            commit_interval=self.settings.commit_interval,
            journal=self._journal(cursor),
        )
        sub = await self.inner.subscribe(
            pattern, qos=qos, owner=owner, timeout=timeout, mailbox=mailbox
        )
        sub.transport = self  # closing it comes back here: the cursor's last commit
        recovery = Recovery(mailbox, self._ask, self.settings)
        self._recoveries[sub] = asyncio.get_running_loop().create_task(
            recovery.run(), name=f"loom:durable:{owner}:{pattern}"
        )
        return sub

    def _journal(self, cursor: str | None) -> CursorJournal | None:
        if cursor is None or self.journal_dir is None:
            return None
        try:
            return CursorJournal(self.journal_dir, cursor)
        except OSError as exc:  # JournalBusy, a read-only folder: the log's cursor alone
            log.warning(
                "subscription %r keeps no local journal (%s): after a crash, what it "
                "handled since its cursor's last commit is delivered again",
                cursor,
                exc,
            )
            return None

    def _durable(self, pattern: str) -> bool:
        # Loom's own topics (tools, control, reports) have their own answers to loss
        return self.settings.durable and not pattern.startswith(reserved.LOOM_PREFIX)

    async def unsubscribe(self, sub: Subscription) -> None:
        await self.inner.unsubscribe(sub)
        task = self._recoveries.pop(sub, None)
        if task is not None:
            try:
                await asyncio.wait_for(task, self.settings.request_timeout + 1.0)
            except TimeoutError:
                log.warning("the last commit of %r did not finish", sub)

    def _commit(self, commit: Commit) -> None:
        self._send(reserved.EVENTLOG_COMMIT, commit, type="commit")

    # -- talking to the log ----------------------------------------------------------

    def _send(self, topic: str, message: Message, *, type: str) -> None:
        with contextlib.suppress(LoomError):  # closing: the log learns nothing more
            self.inner.publish(
                Envelope(
                    topic=topic,
                    type=type,
                    source=self.inner.client_id,
                    payload=encode(message),
                    content_type=CONTENT_TYPE,
                )
            )

    async def _ask(
        self, topic: str, message: Message, expected: Any, timeout: float, tries: int = 1
    ) -> Any:
        """Send a request to the event log and decode its reply (None: no payload). With
        ``tries`` > 1 the same request (same correlation id) is sent again after each
        ``timeout`` without an answer, and an answer to any of them is taken: a log busy
        writing a burst answers late, and a request lost in a failover is sent again.

        Raises:
            LoomTimeoutError: no answer in time; LoomError: the log refused.
        """
        inbox = self.inner.inbox(_OWNER)
        correlation = new_id()
        box = self.inner.expect_replies(inbox, correlation)
        request = Envelope(
            topic=topic,
            type="request",
            source=self.inner.client_id,
            correlation_id=correlation,
            reply_to=inbox,
            payload=encode(message),
            content_type=CONTENT_TYPE,
        )
        loop = asyncio.get_running_loop()
        try:
            for attempt in range(1, tries + 1):
                self.inner.publish(msgspec.structs.replace(request))
                if await box.wait(loop.time() + timeout):
                    break
                if attempt < tries:
                    log.warning(
                        "the event log did not answer on %s in %g s (try %d of %d): asking again",
                        topic, timeout, attempt, tries,
                    )  # fmt: skip
            else:
                raise LoomTimeoutError(
                    f"the event log did not answer on {topic} in {tries} x {timeout:g} s"
                )
            reply = box.items.popleft()
        finally:
            self.inner.forget(inbox, correlation)
        if reply.type == "error":
            raise LoomError(f"the event log refused a request on {topic}: {reply.data}")
        return decode(reply.payload, expected) if expected is not None else None

    # -- the rest of the transport -----------------------------------------------------

    def statistics(self) -> ClientStatistics:
        stats = self.inner.statistics()
        if self.tracker is None:
            return stats
        return dataclasses.replace(stats, durability=self.tracker.statistics())
