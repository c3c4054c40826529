"""What an agent's consumer loop costs per event, with tracing off and on.

    python benchmarks/consumer.py [--events 200000] [--json]

In one process, a runtime on its embedded bus starts the ``loom bench`` counting agent;
``--events`` decoded events are put straight into its subscription's mailbox (one
``put_many``, as a received batch is), and the process's CPU time is measured until the
handler has counted them all: the mailbox, the runner's bookkeeping (status, latency and
handler-time statistics, the current event), the handler call, and with tracing on the
handle span made and exported on the bus. Best of five rounds, a new agent each round.

Figures to compare one change against the next (``docs/benchmarks.md``), not targets.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

from _cli import run  # benchmarks/_cli.py, beside this script

from loom_kernel.ops.bench.bus import BENCH_DATA, counter_class
from loom_kernel.protocol import Envelope, encode_data
from loom_kernel.runtime import open_runtime

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def received(count: int) -> list[Envelope]:
    """Events as the receive loop hands them over (decoded, version set)."""
    payload, content_type = encode_data(BENCH_DATA)
    now = time.time_ns()
    return [
        Envelope(topic="bench.tick", data=dict(BENCH_DATA), payload=payload, v=1,
                 content_type=content_type, id=f"0123456789ab-{n:x}", source="bench",
                 ts=now, seq=n + 1, traceparent=TRACEPARENT)
        for n in range(count)
    ]  # fmt: skip


async def consume_cost(events: int, traced: bool) -> float:
    """CPU microseconds per event, best of five rounds."""
    with tempfile.TemporaryDirectory(prefix="loom-bench-") as folder:
        tracing = "sample_ratio = 1.0\ncollect = false" if traced else "enabled = false"
        (Path(folder) / "loom.toml").write_text(f'[bus]\nmode = "auto"\n[tracing]\n{tracing}\n')
        best = float("inf")
        async with open_runtime(Path(folder) / "loom.toml") as rt:
            for round_ in range(5):
                counter = counter_class()(f"consumer-{round_}", events)
                await rt.start(counter)
                # the agent's own subscription, reached past the client's public surface
                # (a benchmark of the consumer alone: no socket, no decoding)
                subs = rt.client._dispatcher.subscriptions  # type: ignore[attr-defined]
                [sub] = [s for s in subs if s.owner == counter.id]
                batch = received(events)
                started = time.process_time()
                sub.mailbox.put_many(batch)
                await counter.done.wait()
                best = min(best, time.process_time() - started)
                await rt.stop(counter)
    return best / events * 1e6


async def measure(events: int) -> dict[str, float]:
    untraced = await consume_cost(events, traced=False)
    traced = await consume_cost(events, traced=True)
    return {
        "events": events,
        "consume_us": round(untraced, 3),
        "consume_traced_us": round(traced, 3),
        "handle_span_cost_us": round(traced - untraced, 3),
    }


if __name__ == "__main__":
    run(__doc__, lambda events: asyncio.run(measure(events)))
