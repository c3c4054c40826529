"""Durability on NATS: JetStream is the event log (``[bus] backend = "nats"``).

:class:`JetStreamTransport` wraps the :class:`~loom_kernel.bus.nats.NatsClient` as
:class:`~.durable.DurableTransport` wraps the ZeroMQ client, with the same settings:

- the stream ``[bus] stream`` records ``[eventlog] topics`` (as NATS subjects), with
  ``[bus] stream_replicas`` copies, for ``[eventlog] retention_hours`` and at most
  ``max_size_mb``; it is created, or updated to these settings, on start. JetStream
  records subjects, it cannot leave some out: ``[eventlog] topics`` must name the
  application's topics (``"*"`` would take in Loom's own reports and replies too);
- ``publish`` on an ``[eventlog] reliable`` topic goes through JetStream: it is kept
  until the stream acknowledges it (``[eventlog] ack_timeout``), and sent again if not,
  with its event id as ``Nats-Msg-Id`` so the stream stores it once;
- ``subscribe(..., qos="reliable", owner=<agent>)`` on a recorded topic is a durable
  pull consumer (:mod:`.jetstream_consumer`): what the agent did not finish before a
  crash, a restart or a lost node is delivered again, and once;
- everything else goes to the NATS client unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections import deque
from pathlib import Path
from typing import Any

from ..bus.nats.client import NatsClient
from ..bus.nats.codec import encode_message
from ..bus.nats.subjects import pattern_subject
from ..bus.transport import ClientStatistics, Subscription
from ..bus.wrapper import TransportWrapper
from ..config import BusConfig, EventLogConfig
from ..errors import BusError, ConfigError, LoomTimeoutError, TopicError
from ..protocol import reserved
from ..protocol.envelope import Envelope
from ..protocol.topics import Pattern, compile_pattern
from .jetstream_consumer import HandledSequences, JetStreamMailbox, fetch_into
from .journal import CursorJournal

__all__ = ["JetStreamTransport", "consumer_name", "covers", "stream_subjects"]

log = logging.getLogger("loom.eventlog")
_WINDOW = 512  # reliable events awaiting their acks at once
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def stream_subjects(settings: EventLogConfig) -> list[str]:
    """The stream's subjects: ``[eventlog] topics`` as NATS subjects.

    Raises:
        ConfigError: ``"*"`` (JetStream would record Loom's own traffic), or a bad pattern.
    """
    if "*" in settings.topics:
        raise ConfigError(
            '[eventlog] topics = ["*"] on NATS: JetStream records subjects and cannot leave '
            "Loom's own reports and replies out; name the application's topics instead, "
            'e.g. topics = ["orders.*", "market.*"] (docs/scaling.md)'
        )
    try:
        return [pattern_subject(p) for p in settings.topics]
    except TopicError as exc:
        raise ConfigError(f"[eventlog] topics: {exc}") from None


def covers(outer: Pattern, inner: Pattern) -> bool:
    """Whether every topic ``inner`` matches, ``outer`` matches too."""
    a, b = outer.text.split("."), inner.text.split(".")
    for index, want in enumerate(a):
        last = index == len(a) - 1
        if index >= len(b):
            return False
        got = b[index]
        if want == "*" and last:
            return True  # one or more: whatever inner has from here (at least one segment)
        if want != "*" and (got == "*" or got != want):
            return False
    return len(a) == len(b) and not (b[-1] == "*" and a[-1] != "*")


def consumer_name(owner: str, pattern: str) -> str:
    """A durable consumer's name for an agent's subscription (JetStream allows letters,
    digits, ``_`` and ``-``)."""
    return _UNSAFE.sub("_", f"{owner}-{pattern}".replace("*", "ALL"))[:200]


class JetStreamTransport(TransportWrapper):
    """The NATS client with JetStream behind it (see the module docstring).

    Raises:
        ConfigError: ``[eventlog] topics`` or ``reliable`` cannot be a stream's subjects.
    """

    def __init__(
        self,
        inner: NatsClient,
        settings: EventLogConfig,
        bus: BusConfig,
        *,
        journal_dir: Path | None = None,
    ):
        super().__init__(inner)
        self.inner: NatsClient = inner
        self.settings = settings
        self.bus = bus
        self.journal_dir = journal_dir
        self.subjects = stream_subjects(settings)
        self._recorded = [compile_pattern(p) for p in settings.topics]
        try:
            self._reliable = [compile_pattern(p) for p in settings.reliable]
        except TopicError as exc:
            raise ConfigError(f"[eventlog] reliable: {exc}") from None
        for pattern in self._reliable:
            if not any(covers(r, pattern) for r in self._recorded):
                raise ConfigError(
                    f"[eventlog] reliable: {pattern.text!r} is not in [eventlog] topics, so "
                    "the stream would not keep it: add it there"
                )
        self._js: Any = None
        self._queue: deque[tuple[str, bytes, dict[str, str]]] = deque()
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()
        self._in_flight = self.acked = self.resent = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._pulls: dict[Subscription, tuple[Any, asyncio.Task[None]]] = {}

    # -- the Transport seam, passed through ------------------------------------------

    async def connect(self, timeout: float = 5.0) -> None:
        await self.inner.connect(timeout)
        await self.start()

    def statistics(self) -> ClientStatistics:
        durability = {"in_flight": self._in_flight + len(self._queue), "acked": self.acked,
                      "resent": self.resent, "stream": self.bus.stream}  # fmt: skip
        stats = self.inner.statistics()
        durable = [
            {"pattern": sub.pattern.text, "owner": sub.owner, **sub.statistics().to_dict()}
            for sub in self._pulls
        ]
        return dataclasses.replace(
            stats, durability=durability, subscriptions=[*stats.subscriptions, *durable]
        )

    # -- the stream ------------------------------------------------------------------

    async def start(self) -> None:
        """Create the stream, or bring it to these settings; start the publisher.

        Raises:
            BusError: JetStream did not answer (not enabled on the server, or no leader
                within ``[bus] connect_timeout``).
        """
        if self._js is not None:
            return
        self._js = self.inner.connection.jetstream()
        await self._ensure_stream()
        self._tasks.append(
            asyncio.get_running_loop().create_task(self._publish_loop(), name="loom:jetstream")
        )

    async def _ensure_stream(self) -> None:
        from nats.js.api import StreamConfig
        from nats.js.errors import NotFoundError

        config = StreamConfig(
            name=self.bus.stream, subjects=self.subjects, num_replicas=self.bus.stream_replicas,
            max_age=self.settings.retention_hours * 3600,
            max_bytes=int(self.settings.max_size_mb * 1024 * 1024), duplicate_window=120.0,
        )  # fmt: skip
        deadline = time.monotonic() + max(self.bus.connect_timeout, 10.0)
        while True:
            try:
                try:
                    await self._js.stream_info(self.bus.stream)
                except NotFoundError:
                    await self._js.add_stream(config)
                else:
                    await self._js.update_stream(config)
                return
            except Exception as exc:  # no JetStream, or a leader still being elected
                if time.monotonic() > deadline:
                    raise BusError(
                        f"JetStream did not set up stream {self.bus.stream!r} "
                        f"({type(exc).__name__}: {exc}): is JetStream enabled on the server "
                        "(`nats-server -js`), and are enough nodes up for "
                        f"stream_replicas = {self.bus.stream_replicas}?"
                    ) from None
                await asyncio.sleep(0.25)

    # -- publishing ------------------------------------------------------------------

    def publish(self, env: Envelope) -> None:
        if not self._reliable or not any(p.matches(env.topic) for p in self._reliable):
            self.inner.publish(env)
            return
        if self._in_flight + len(self._queue) >= self.settings.max_in_flight:
            raise BusError(
                f"{self.settings.max_in_flight:,} events on reliable topics wait for "
                f"JetStream's acks: is the stream {self.bus.stream!r} reachable? "
                f"({env.topic!r} was not published)"
            )
        self.inner.prepare(env)
        self._queue.append(encode_message(env))
        self._empty.clear()
        self._wake.set()

    async def _publish_loop(self) -> None:
        backoff = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(_WINDOW, len(self._queue)))]
                failed = await self._send(batch)
                if failed:
                    self.resent += len(failed)
                    self._queue.extendleft(reversed(failed))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                else:
                    backoff = 0.05
            self._empty.set()

    async def _send(
        self, batch: list[tuple[str, bytes, dict[str, str]]]
    ) -> list[tuple[str, bytes, dict[str, str]]]:
        """Publish a batch through JetStream; the ones not acknowledged in time."""
        self._in_flight = len(batch)
        futures: list[asyncio.Future[Any] | None] = []
        for subject, data, headers in batch:
            try:
                futures.append(await self._js.publish_async(subject, data, headers=headers))
            except Exception:  # stalled or disconnected: this one goes again
                futures.append(None)
        pending = [f for f in futures if f is not None]
        if pending:
            await asyncio.wait(pending, timeout=self.settings.ack_timeout)
        failed = []
        for item, future in zip(batch, futures, strict=True):
            if future is not None and future.done() and not future.cancelled():
                if future.exception() is None:
                    self.acked += 1
                    continue
            elif future is not None:
                future.cancel()
            failed.append(item)
        self._in_flight = 0
        return failed

    async def wait_acknowledged(self, timeout: float | None = None) -> None:
        """Return once JetStream has acknowledged every event published on a reliable topic.

        Raises:
            LoomTimeoutError: some still wait after ``timeout`` seconds.
        """
        try:
            await asyncio.wait_for(self._empty.wait(), timeout)
        except TimeoutError:
            raise LoomTimeoutError(
                f"{self._in_flight + len(self._queue)} events on reliable topics are not "
                f"acknowledged by JetStream after {timeout:g} s: is stream "
                f"{self.bus.stream!r} reachable (enough nodes up)?"
            ) from None

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
        compiled = compile_pattern(pattern)
        named = bool(owner) and owner != self.inner.client_id
        durable = (
            qos == "reliable" and named and self.settings.durable
            and not pattern.startswith(reserved.LOOM_PREFIX)
            and any(covers(r, compiled) for r in self._recorded)
        )  # fmt: skip
        if not durable:
            return await self.inner.subscribe(
                pattern, qos=qos, owner=owner, timeout=timeout, **mailbox_options
            )
        return await self._durable(compiled, owner, mailbox_options.get("maxsize") or 1_000_000)

    async def _durable(self, pattern: Pattern, owner: str, maxsize: int) -> Subscription:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        name = consumer_name(owner, pattern.text)
        config = ConsumerConfig(
            durable_name=name, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.NEW,
            ack_wait=max(self.settings.ack_timeout * 5, 10.0), max_ack_pending=20_000,
        )  # fmt: skip
        pull = await self._retry(
            lambda: self._js.pull_subscribe(
                pattern_subject(pattern.text), durable=name, stream=self.bus.stream, config=config
            ),
            f"durable subscription {pattern.text!r} of {owner!r}",
        )
        mailbox = JetStreamMailbox(maxsize, name, HandledSequences(self._journal(name)))
        sub = Subscription(self, pattern, mailbox, owner)
        task = asyncio.get_running_loop().create_task(
            fetch_into(pull, mailbox), name=f"loom:durable:{name}"
        )
        self._pulls[sub] = (pull, task)
        return sub

    async def _retry(self, make: Any, what: str) -> Any:
        deadline = time.monotonic() + max(self.bus.connect_timeout, 10.0)
        while True:
            try:
                return await make()
            except Exception as exc:  # a leader being elected
                if time.monotonic() > deadline:
                    raise BusError(f"{what}: JetStream did not answer ({exc})") from None
                await asyncio.sleep(0.25)

    def _journal(self, name: str) -> CursorJournal | None:
        if self.journal_dir is None:
            return None
        try:
            return CursorJournal(self.journal_dir, f"jetstream-{name}")
        except OSError as exc:  # busy (the same agent twice) or read-only
            log.warning("consumer %s keeps no journal (%s): a kill may repeat one event", name, exc)
            return None

    async def unsubscribe(self, sub: Subscription) -> None:
        pulled = self._pulls.pop(sub, None)
        if pulled is None:
            await self.inner.unsubscribe(sub)
            return
        pull, task = pulled
        sub.closed = True
        sub.mailbox.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        with contextlib.suppress(Exception):
            await pull.unsubscribe()  # the durable consumer stays: it resumes next time
        handled = getattr(sub.mailbox, "handled", None)
        if handled is not None and handled.journal is not None:
            handled.journal.close()

    async def aclose(self) -> None:
        """Wait a little for JetStream's acks, stop the durable subscriptions."""
        if self._queue or self._in_flight:
            patience = 3 * self.settings.ack_timeout
            with contextlib.suppress(LoomTimeoutError):
                await self.wait_acknowledged(patience)
            if self._queue or self._in_flight:
                log.error(
                    "%d events on reliable topics were not acknowledged by JetStream within "
                    "%g s and may be lost", self._in_flight + len(self._queue), patience,
                )  # fmt: skip
        for sub in list(self._pulls):
            await self.unsubscribe(sub)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
