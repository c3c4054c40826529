"""Spans to an OTLP/HTTP backend (Jaeger, Phoenix, a collector), never faster than it takes.

:class:`OTLPExport` hands Loom's spans to the OpenTelemetry SDK's OTLP/HTTP exporter from
a worker thread, through a bounded queue. The event loop only appends to the queue. When
the backend is slower than the span rate (a busy Phoenix, a remote collector), the queue
stays bounded: spans that do not fit are dropped and counted, never silently, and
:meth:`OTLPExport.statistics` says so (the runtime reports it on the bus every heartbeat;
``loom status`` shows it). The fix is sampling: ``[tracing] sample_ratio`` (errors are
always kept).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..protocol.spans import Span

__all__ = ["OTLPExport", "OTLPStatistics", "export_loss"]

log = logging.getLogger("loom.tracing")
BATCH_SIZE = 512  # spans per export request
INTERVAL = 0.5  # seconds between exports when the queue is not full enough to send now


@dataclass(frozen=True)
class OTLPStatistics:
    """What went to the OTLP backend, and what did not."""

    endpoint: str
    queued: int
    exported: int
    dropped: int  # the queue was full: the backend is slower than the span rate
    failed: int  # the backend refused them or did not answer

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def export_loss(process: str, tracing: dict[str, Any]) -> str | None:
    """What a process lost on the way to its OTLP backend, in one sentence (None: nothing).

    ``tracing`` is the ``"tracing"`` part of the process's ``loom.client.<id>.stats``
    report; ``loom status`` and the studio both say it this way.
    """
    otlp = tracing.get("otlp") or {}
    dropped, failed = otlp.get("dropped", 0), otlp.get("failed", 0)
    if not (dropped or failed):
        return None
    return (
        f"tracing, {process}: {dropped} span(s) dropped and {failed} refused on the way to "
        f"{otlp.get('endpoint')} ({otlp.get('exported', 0)} exported): the backend is slower "
        "than the span rate or down; lower [tracing] sample_ratio"
    )


class OTLPExport:
    """A bounded queue of spans and the thread that exports them.

    Args:
        endpoint: ``http://host:4318`` (``/v1/traces`` is added when missing).
        convert: turns a Loom span into what the exporter takes (a ``ReadableSpan``).
        max_queue: spans waiting at most; more are dropped and counted.
        headers: HTTP headers of every request (an ``Authorization``, a project).
        timeout: seconds per export request.
        exporter: the exporter to use (default: the SDK's ``OTLPSpanExporter``).
    """

    def __init__(
        self,
        endpoint: str,
        convert: Callable[[Span], Any],
        *,
        max_queue: int = 20_000,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        exporter: Any = None,
    ):
        url = endpoint.rstrip("/")
        self.endpoint = url if url.endswith("/v1/traces") else f"{url}/v1/traces"
        self._convert = convert
        self._max_queue = max_queue
        self._exporter = exporter or _sdk_exporter(self.endpoint, headers, timeout)
        self._queue: deque[Span] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self.exported = self.dropped = self.failed = 0
        self._warned = 0.0
        self._thread = threading.Thread(target=self._run, name="loom-otlp", daemon=True)
        self._thread.start()

    def submit(self, spans: Iterable[Span]) -> None:
        """Queue finished spans (from the event loop: this never waits)."""
        with self._lock:
            room = self._max_queue - len(self._queue)
            batch = list(spans)
            kept = batch[: max(room, 0)]
            self._queue.extend(kept)
            lost = len(batch) - len(kept)
            self.dropped += lost
            full = len(self._queue) >= BATCH_SIZE
        if lost:
            self._warn_dropped()
        if full:
            self._wake.set()

    def _warn_dropped(self) -> None:
        now = time.monotonic()
        if now - self._warned > 10:
            self._warned = now
            log.warning(
                "OTLP backend %s is slower than the span rate: %d spans dropped so far (queue "
                "full at %d); lower [tracing] sample_ratio (errors are always kept)",
                self.endpoint,
                self.dropped,
                self._max_queue,
            )

    def _run(self) -> None:
        while True:
            self._wake.wait(INTERVAL)
            self._wake.clear()
            while self._export_one_batch():
                pass
            if self._closing:
                return

    def _export_one_batch(self) -> bool:
        """Export up to ``BATCH_SIZE`` spans; False when the queue was empty."""
        with self._lock:
            batch = [self._queue.popleft() for _ in range(min(BATCH_SIZE, len(self._queue)))]
        if not batch:
            return False
        readable = []
        for span in batch:
            try:
                readable.append(self._convert(span))
            except Exception as exc:  # a malformed id from a foreign publisher
                self.failed += 1
                log.warning("span %s not sent over OTLP: %s", span.name, exc)
        if not readable:
            return True
        try:
            ok = self._exporter.export(readable).name == "SUCCESS"
        except Exception as exc:  # the exporter must never take the thread down
            log.warning("OTLP export to %s failed: %s", self.endpoint, exc)
            ok = False
        if ok:
            self.exported += len(readable)
        else:
            self.failed += len(readable)
        return True

    def statistics(self) -> OTLPStatistics:
        with self._lock:
            queued = len(self._queue)
        return OTLPStatistics(self.endpoint, queued, self.exported, self.dropped, self.failed)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Export what is queued (within ``timeout``), then stop; what is left is dropped."""
        self._closing = True
        self._wake.set()
        self._thread.join(timeout)
        with self._lock:
            self.dropped += len(self._queue)
            self._queue.clear()
        self._exporter.shutdown()


def _sdk_exporter(endpoint: str, headers: dict[str, str] | None, timeout: float) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint, headers=headers or None, timeout=timeout)
