"""The span store at its limits: how fast it stores while dropping its oldest spans.

    python benchmarks/span_store.py [--cap 1000000] [--max-mb 512] [--batch 600] [--json]

Fills a fresh store up to ``--cap`` spans (or ``--max-mb``), then keeps writing batches
of ``--batch`` spans shaped like the Market Analyst's (a handler span: three messaging
attributes, one of five agents) for ``--seconds``: every batch makes the oldest spans go
first. Reports spans stored per second while full (the purge rate: as many go as come),
the batch write time p50/p99, and the count, file and WAL size against the limits after
every batch (the largest seen). The demo at ~1,000 events/s stores ~4,000 spans/s.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from loom_kernel.protocol.spans import Span, new_span_id, new_trace_id
from loom_kernel.stats import percentile
from loom_kernel.tracing import SpanStore

AGENTS = ["trend", "risk", "sentiment", "planner", "executor"]


ATTRIBUTES = {
    "messaging.destination.name": "market.price.AAPL",
    "messaging.message.id": "a1b2c3d4e5f6-1f3a",
    "loom.handler": "on_price",
}


def span(start_ns: int) -> Span:
    name = f"handle market.price.{random.choice('ABCDE')}"
    return Span(
        new_trace_id(), new_span_id(), new_span_id(), name, "consumer", start_ns,
        start_ns + 50_000, service="loom:bench", agent=random.choice(AGENTS),
        attributes=dict(ATTRIBUTES),
    )  # fmt: skip


def batch(size: int, start_ns: int) -> list[Span]:
    return [span(start_ns + i) for i in range(size)]


def measure(cap: int, max_mb: float | None, size: int, seconds: float) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="loom-store-"))
    store = SpanStore(folder / "traces.db", max_spans=cap, max_mb=max_mb)
    clock = time.time_ns() - 10**15
    filled = time.perf_counter()
    while store.count() < cap and not store.dropped:
        store.add(batch(size, clock))
        clock += size * 1000
    fill_s = time.perf_counter() - filled
    times: list[float] = []
    largest = {"spans": 0, "file_bytes": 0, "wal_bytes": 0}
    dropped_before, stored = store.dropped, 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        spans = batch(size, clock)
        clock += size * 1000
        t = time.perf_counter()
        stored += store.add(spans)
        times.append(time.perf_counter() - t)
        stats = store.statistics()
        for key in largest:
            largest[key] = max(largest[key], getattr(stats, key))
    elapsed = time.perf_counter() - started
    times.sort()
    store.close()
    return {
        "cap_spans": cap,
        "max_mb": max_mb,
        "batch": size,
        "fill_seconds": round(fill_s, 1),
        "stored_per_s_while_full": round(stored / elapsed),
        "dropped_per_s_while_full": round((store.dropped - dropped_before) / elapsed),
        "batch_p50_ms": round(percentile(times, 50) * 1000, 1),
        "batch_p99_ms": round(percentile(times, 99) * 1000, 1),
        "largest_count": largest["spans"],
        "largest_file_mb": round(largest["file_bytes"] / 2**20, 1),
        "largest_wal_mb": round(largest["wal_bytes"] / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cap", type=int, default=1_000_000)
    parser.add_argument("--max-mb", type=float, default=512.0)
    parser.add_argument("--batch", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    result = measure(options.cap, options.max_mb, options.batch, options.seconds)
    if options.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>26}  {value}")


if __name__ == "__main__":
    main()
