"""The event log service: records what the bus carries and answers for it.

The process that runs the bus starts one (an embedded runtime, ``loom bus``), or
``loom log`` runs it alone. It

- subscribes to ``[eventlog] topics`` minus ``exclude`` (by default everything but
  Loom's own high-rate reports) and writes what arrives into the :class:`EventLog`,
  in batched transactions on a writer thread: the event loop only appends to a list;
- acknowledges the events of reliable topics once their transaction committed, on
  ``loom.eventlog.ack.<client>``, and stores the ones publishers send again;
- keeps the cursors of durable subscriptions (commits) and answers their requests
  (resume, fetch) once everything received before the request is written;
- publishes its statistics on ``loom.eventlog.stats`` and purges old events.

One process at a time records into a file (an exclusive lock beside it).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..bus.qos import Mailbox
from ..bus.transport import Subscription, Transport
from ..config import EventLogConfig
from ..errors import ConfigError, LoomError, ProtocolError, TopicError
from ..protocol import reserved
from ..protocol.envelope import Envelope, decode_frames, encode_data
from ..protocol.topics import Pattern, compile_pattern
from .store import EventLog
from .wire import CONTENT_TYPE, Commit, Fetch, Message, Resume, Store, decode, encode

__all__ = ["DEFAULT_EXCLUDE", "EventLogService", "EventLogServiceStatistics", "open_event_log"]

log = logging.getLogger("loom.eventlog")
#: What the log leaves out unless ``[eventlog] exclude`` says otherwise.
DEFAULT_EXCLUDE = (
    reserved.ALL_SPANS,
    reserved.HEARTBEATS,
    reserved.CLIENT_STATS,
    reserved.BROKER_STATS,
    f"{reserved.REPLAY_PREFIX}*",
)
_BATCH = 20_000  # events per transaction at most
_MAX_PENDING = 200_000  # events waiting for the writer before new ones are dropped
_VERDICTS = 50_000  # topics whose verdict (record or not) is remembered


@dataclass(frozen=True)
class EventLogServiceStatistics:
    """What the service has done since it started."""

    received: int
    recorded: int
    pending: int
    dropped: int
    failed: int
    batches: int
    acks: int
    commits: int
    requests: int
    malformed: int
    shed: int  # events sent again, not taken while the writer was behind (sent later)
    rate: float  # events recorded per second, over the last interval

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class EventLogService:
    """Records the bus into an :class:`EventLog` (see the module docstring).

    Args:
        settings: ``[eventlog]``.
        store: the log file.
        source: the source of what the service publishes (it never records it).
    """

    def __init__(self, settings: EventLogConfig, store: EventLog, *, source: str = "eventlog"):
        self.settings = settings
        self.log = store
        self.source = source
        self._include = _patterns(settings.topics, "topics")
        exclude = DEFAULT_EXCLUDE if settings.exclude is None else settings.exclude
        self._exclude = _patterns([*exclude, f"{reserved.EVENTLOG_PREFIX}*"], "exclude")
        self._verdicts: dict[str, int] = {}
        self._pending: list[Envelope] = []
        self._commits: list[Commit] = []
        self._wake = asyncio.Event()
        self._flushers: list[tuple[int, asyncio.Future[None]]] = []
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-eventlog-w")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-eventlog-r")
        self._transport: Transport | None = None
        self._subs: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._recorder: asyncio.Task[None] | None = None
        self._lock: int | None = None
        self._closed = False
        self.received = self.written = self.recorded = self.dropped = self.failed = 0
        self.batches = self.acks = self.commits = self.requests = self.malformed = 0
        self.shed = 0  # events sent again while the writer was behind: not taken
        self._rate = 0.0

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, transport: Transport, *, stats_interval: float = 1.0) -> None:
        """Take the file's lock, subscribe, and record until :meth:`aclose`.

        Raises:
            LoomError: another process records into this file already.
        """
        self._lock = _take_lock(self.log.path)
        self._transport = transport
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer, self.log.statistics)  # opens the file
            for index, pattern in enumerate(self._include):
                intake = _Intake(self, index)
                self._subs.append(
                    await transport.subscribe(pattern.text, owner=self.source, mailbox=intake)
                )
            serve: list[tuple[str, Callable[[Envelope], Awaitable[None]]]] = [
                (reserved.EVENTLOG_COMMIT, self._on_commit),
                (reserved.EVENTLOG_STORE, self._on_store),
                (reserved.EVENTLOG_RESUME, self._on_resume),
                (reserved.EVENTLOG_FETCH, self._on_fetch),
            ]
            for topic, handler in serve:
                sub = await transport.subscribe(topic, owner=self.source)
                self._subs.append(sub)
                self._tasks.append(loop.create_task(self._serve(sub, handler), name=f"{topic}"))
        except BaseException:
            await self.aclose()
            raise
        self._recorder = loop.create_task(self._record(), name="loom:eventlog:record")
        self._tasks.append(self._recorder)
        self._tasks.append(loop.create_task(self._tick(stats_interval), name="loom:eventlog:stats"))

    async def aclose(self) -> None:
        """Stop receiving, write what arrived, close the file and release its lock
        (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for sub in self._subs:
            await sub.aclose()
        self._subs.clear()
        if self._recorder is not None and not self._recorder.done():
            with contextlib.suppress(TimeoutError):
                await self.flush(timeout=5.0)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        loop = asyncio.get_running_loop()
        for executor in (self._writer, self._reader):
            await loop.run_in_executor(executor, self.log.close)
            executor.shutdown(wait=False)
        if self._lock is not None:
            os.close(self._lock)  # releases the lock
            self._lock = None

    async def flush(self, timeout: float | None = None) -> None:
        """Return once everything received until now is written (raises ``TimeoutError``)."""
        target = self.received
        if self.written >= target:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._flushers.append((target, waiter))
        self._wake.set()
        await asyncio.wait_for(waiter, timeout)

    # -- recording -------------------------------------------------------------------

    def _verdict(self, topic: str) -> int:
        """The index of the intake subscription that records ``topic`` (-1: none), so
        overlapping patterns record an event once."""
        verdict = -1
        if not any(p.matches(topic) for p in self._exclude):
            verdict = next((i for i, p in enumerate(self._include) if p.matches(topic)), -1)
        if len(self._verdicts) >= _VERDICTS:
            self._verdicts.clear()
        self._verdicts[topic] = verdict
        return verdict

    def take(self, env: Envelope) -> None:
        """Queue one event for the writer (the receive loop calls it; never blocks)."""
        if len(self._pending) >= _MAX_PENDING:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 100_000 == 0:
                log.error(
                    "the event log cannot write as fast as the bus carries events: %d "
                    "dropped so far (reliable topics are sent again; others are lost to it)",
                    self.dropped,
                )
            return
        self._pending.append(env)
        self.received += 1
        if not self._wake.is_set():
            self._wake.set()

    async def _record(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending or self._commits:
                if len(self._pending) <= _BATCH:
                    events, self._pending = self._pending, []
                else:
                    events, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
                commits, self._commits = self._commits, []
                await self._write(loop, events, commits)
            self._release_flushers()

    async def _write(
        self, loop: asyncio.AbstractEventLoop, events: list[Envelope], commits: list[Commit]
    ) -> None:
        try:
            acks = await loop.run_in_executor(self._writer, self.log.append, events, commits)
        except (LoomError, sqlite3.Error) as exc:
            self.failed += len(events)
            log.error("%d events not recorded: %s", len(events), exc)
            acks = []
        else:
            self.recorded += len(events)
            self.batches += 1
        self.written += len(events) + len(commits)
        for client, ack in acks:
            self._send(reserved.eventlog_ack(client), encode(ack), type="ack")
            self.acks += 1
        self._release_flushers()

    def _release_flushers(self) -> None:
        waiting = []
        for target, waiter in self._flushers:
            if self.written >= target:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((target, waiter))
        self._flushers = waiting

    # -- requests ----------------------------------------------------------------------

    async def _serve(
        self, sub: Subscription, handler: Callable[[Envelope], Awaitable[None]]
    ) -> None:
        async for env in sub:
            self.requests += 1
            try:
                await handler(env)
            except (ProtocolError, TopicError) as exc:
                self.malformed += 1
                log.warning("bad request on %s from %s: %s", env.topic, env.source, exc)
                self._fail(env, exc)
            except (LoomError, sqlite3.Error, TimeoutError) as exc:
                log.warning("request on %s from %s failed: %s", env.topic, env.source, exc)
                self._fail(env, exc)

    async def _on_commit(self, env: Envelope) -> None:
        commit: Commit = decode(env.payload, Commit)
        self._commits.append(commit)
        self.commits += 1
        self.received += 1
        self._wake.set()
        if commit.close and env.reply_to:
            await self.flush(self.settings.request_timeout)
            self._answer(env, None)

    async def _on_store(self, env: Envelope) -> None:
        store: Store = decode(env.payload, Store)
        if len(self._pending) > _MAX_PENDING // 2:
            # Behind on writing: what is sent again is most likely waiting already, and
            # taking it would feed a storm of resends. Its publisher keeps it and sends
            # it again later (backing off), so nothing is lost by shedding it.
            self.shed += len(store.events)
            return
        for topic, header, payload in store.events:
            self.take(decode_frames([topic.encode(), header, payload]))

    async def _on_resume(self, env: Envelope) -> None:
        resume: Resume = decode(env.payload, Resume)
        compile_pattern(resume.pattern)
        # no timeout: a slow answer is asked again, a refusal would make the subscriber
        # go on without the log
        await self.flush()
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(
            self._writer, self.log.resume, resume.cursor, resume.pattern
        )
        self._answer(env, answer)

    async def _on_fetch(self, env: Envelope) -> None:
        fetch: Fetch = decode(env.payload, Fetch)
        await self.flush()  # as for a resume
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(
            self._reader, self.log.fetch, fetch.ranges, max(1, min(fetch.limit, 20_000))
        )
        self._answer(env, answer)

    def _answer(self, request: Envelope, message: Message | None) -> None:
        if request.reply_to:
            payload = encode(message) if message is not None else b""
            self._send(
                request.reply_to, payload, type="reply", correlation_id=_correlation(request)
            )

    def _fail(self, request: Envelope, exc: BaseException) -> None:
        if request.reply_to:
            payload, content_type = encode_data({"error": type(exc).__name__, "message": str(exc)})
            self._send(
                request.reply_to,
                payload,
                type="error",
                correlation_id=_correlation(request),
                content_type=content_type,
            )

    def _send(
        self,
        topic: str,
        payload: bytes,
        *,
        type: str,
        correlation_id: str | None = None,
        content_type: str = CONTENT_TYPE,
    ) -> None:
        if self._transport is None:
            return
        with contextlib.suppress(LoomError):  # the bus went away: the asker times out
            self._transport.publish(
                Envelope(
                    topic=topic,
                    type=type,
                    source=self.source,
                    correlation_id=correlation_id,
                    payload=payload,
                    content_type=content_type,
                )
            )

    # -- statistics and retention ------------------------------------------------------

    async def _tick(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        last_purge = time.monotonic()
        recorded, then = self.recorded, time.monotonic()
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            self._rate = (self.recorded - recorded) / max(now - then, 1e-9)
            recorded, then = self.recorded, now
            payload, content_type = encode_data(self.statistics().to_dict())
            self._send(reserved.EVENTLOG_STATS, payload, type="stats", content_type=content_type)
            if now - last_purge >= _purge_interval(self.settings):
                last_purge = now
                try:
                    purged = await loop.run_in_executor(self._writer, self.log.purge)
                except (LoomError, sqlite3.Error) as exc:
                    log.warning("the event log could not purge old events: %s", exc)
                else:
                    log.debug("purged %d events", purged)

    def statistics(self) -> EventLogServiceStatistics:
        return EventLogServiceStatistics(
            received=self.received,
            recorded=self.recorded,
            pending=len(self._pending),
            dropped=self.dropped,
            failed=self.failed,
            batches=self.batches,
            acks=self.acks,
            commits=self.commits,
            requests=self.requests,
            malformed=self.malformed,
            shed=self.shed,
            rate=round(self._rate, 1),
        )


class _Intake(Mailbox):
    """The mailbox of one recorded pattern: hands events straight to the writer's queue
    (nothing consumes it)."""

    qos = "reliable"

    def __init__(self, service: EventLogService, index: int):
        super().__init__(1)
        self._service = service
        self._index = index

    def put_nowait(self, item: Any) -> None:
        service = self._service
        verdict = service._verdicts.get(item.topic)
        if verdict is None:
            verdict = service._verdict(item.topic)
        if verdict == self._index and item.source != service.source:
            service.take(item)

    def note_gap(self, missing: int) -> None:
        """Events the log missed are counted by the client (``lost``); reliable topics
        are sent again by their publishers."""


async def open_event_log(
    settings: EventLogConfig, path: os.PathLike[str] | str, transport: Transport
) -> EventLogService:
    """Start an event log service recording into ``path`` on ``transport``."""
    service = EventLogService(
        settings,
        EventLog(
            path,
            synchronous=settings.synchronous,
            retention_hours=settings.retention_hours,
            max_size_mb=settings.max_size_mb,
        ),
    )
    await service.start(transport)
    return service


def _patterns(texts: list[str] | tuple[str, ...], key: str) -> list[Pattern]:
    try:
        return [compile_pattern(text) for text in texts]
    except TopicError as exc:
        raise ConfigError(f"[eventlog] {key}: {exc}") from None


def _purge_interval(settings: EventLogConfig) -> float:
    # often enough for short retentions (tests, demos), at most once a minute
    return min(60.0, settings.retention_hours * 3600 / 10)


def _correlation(request: Envelope) -> str:
    return request.correlation_id or request.id


def _take_lock(path: os.PathLike[str] | str) -> int:
    lock_path = f"{os.fspath(path)}.lock"
    os.makedirs(os.path.dirname(lock_path) or ".", exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise LoomError(
            f"the event log {path} is recorded by another process already (pid {holder}): "
            "one log per project; stop the other `loom log`, or set [eventlog] embedded = "
            "false if you run `loom log` yourself"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd
