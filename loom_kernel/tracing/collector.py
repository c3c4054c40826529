"""The span collector: stores the spans every process publishes on the bus.

The process that runs the project's bus (an embedded runtime, or ``loom bus``) starts
one: it subscribes to ``loom.trace.spans.*`` (batched QoS), decodes and checks each
batch, and writes it into the :class:`~loom_kernel.tracing.store.SpanStore` on a worker
thread, so the event loop never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import msgspec

from ..bus.transport import Subscription, Transport
from ..errors import LoomError
from ..protocol import reserved
from ..protocol.spans import Span, valid_ids
from .store import SpanStore

__all__ = ["BACKLOG", "PURGE_EVERY", "SpanCollector"]

log = logging.getLogger("loom.tracing.store")
_spans = msgspec.json.Decoder(list[Span])
#: Seconds between two purges (retention time, WAL truncated); every write already
#: keeps the store within its count and size limits.
PURGE_EVERY = 10.0
#: Span batches (up to 256 spans each) waiting to be stored at most: past it, when the
#: store cannot keep up, the newest are dropped and counted (``dropped``) rather than
#: held in memory (~30 s of the demo's spans, ~64 MB at worst).
BACKLOG = 500


class SpanCollector:
    """Stores the spans published on the bus (run by the process that owns the bus)."""

    def __init__(self, store: SpanStore):
        self.store = store
        self.stored = 0
        self.malformed = 0
        self.received: dict[str, int] = {}  # spans per publishing client
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-spans")
        self._task: asyncio.Task[None] | None = None
        self._sub: Subscription | None = None
        self._idle = asyncio.Event()

    async def start(self, transport: Transport, owner: str = "span-collector") -> None:
        """Subscribe to every process's spans and store them until :meth:`aclose`."""
        self._sub = await transport.subscribe(
            reserved.ALL_SPANS, qos="batched", owner=owner, max_size=64, max_delay=0.2,
            maxsize=BACKLOG,
        )  # fmt: skip
        self._task = asyncio.get_running_loop().create_task(
            self._collect(self._sub), name="loom:spans"
        )

    async def _collect(self, sub: Subscription) -> None:
        loop = asyncio.get_running_loop()
        last_purge = 0.0
        async for batch in sub:
            spans: list[Span] = []
            for event in batch:
                try:
                    decoded = _spans.decode(event.payload)
                    self.received[event.source] = self.received.get(event.source, 0) + len(decoded)
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    self.malformed += 1
                    log.warning("malformed spans from %s: %s", event.source, exc)
                    continue
                for span in decoded:
                    if valid_ids(span.trace_id, span.span_id):
                        spans.append(span)
                    else:
                        self.malformed += 1
            purge = time.monotonic() - last_purge > PURGE_EVERY
            try:
                self.stored += await loop.run_in_executor(self._executor, self._write, spans, purge)
            except (LoomError, sqlite3.Error) as exc:
                log.warning("%d spans not stored: %s", len(spans), exc)
            if purge:
                last_purge = time.monotonic()
            self._idle.set()

    @property
    def dropped(self) -> int:
        """Span batches dropped because more than :data:`BACKLOG` waited to be stored."""
        return self._sub.statistics().dropped if self._sub is not None else 0

    def _write(self, spans: list[Span], purge: bool) -> int:
        stored = self.store.add(spans)
        if purge:
            self.store.purge()
        return stored

    async def drain(self, source: str, sent: int, timeout: float = 2.0) -> bool:
        """Wait until the spans ``source`` sent (``sent`` of them) are stored; used by a
        process that exports its last spans and then closes the collector it runs."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.received.get(source, 0) < sent:
            self._idle.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), min(remaining, 0.05))
        return True

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sub is not None:
            await self._sub.aclose()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self.store.close)
        self._executor.shutdown(wait=False)
