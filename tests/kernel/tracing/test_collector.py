"""The span collector: what the bus carries goes to the store, with a bounded backlog."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from loom_kernel import Runtime, SpanStore
from loom_kernel.protocol import reserved
from loom_kernel.protocol.spans import Span, new_span_id, new_trace_id
from loom_kernel.tracing.collector import BACKLOG, SpanCollector
from tests.conftest import wait_until

pytestmark = pytest.mark.timeout(60)

SENT = BACKLOG + 200  # span batches, one span each


def span() -> Span:
    now = time.time_ns()
    return Span(new_trace_id(), new_span_id(), None, "batch", start_ns=now, end_ns=now + 1000)


async def test_a_store_that_cannot_keep_up_drops_batches_past_the_backlog(
    rt: Runtime, tmp_path: Path
) -> None:
    store = SpanStore(tmp_path / "spans.db")
    store.count()  # the file exists
    collector = SpanCollector(store)
    await collector.start(rt.client, owner="test-collector")
    writer = sqlite3.connect(tmp_path / "spans.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the store's writes wait for this one
    try:
        topic = reserved.spans("test")
        for _ in range(SENT):
            rt.context.endpoint.report(topic, [span()], type="spans")
        await wait_until(lambda: collector.dropped > 0, 20)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    source = rt.context.endpoint.source
    # every batch either reached the collector or was dropped and counted
    await wait_until(lambda: collector.received.get(source, 0) + collector.dropped == SENT, 20)
    assert collector.dropped <= SENT - BACKLOG
    await wait_until(lambda: store.count() > 0, 20)  # and it stores again once it can
    await collector.aclose()
    store.close()
