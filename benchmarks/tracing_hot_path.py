"""What tracing adds per event, on the two hot paths: publishing and handling.

    python benchmarks/tracing_hot_path.py [--events 200000] [--json]

In one process and one run, against a transport that encodes the frames and drops them
(no socket, so only Loom's own work is timed):

- **publish**: ``Endpoint.send`` of a small event with no tracer, then with a
  ``SpanRecorder`` (the producer span recorded, its ``traceparent`` in the header);
- **handle**: a handler called through the middleware chain with no middleware, then
  through ``tracing_middleware`` (the consumer span built from the event's traceparent).

The figures are the extra microseconds per event that tracing costs on each path, and
the ratio traced/untraced. Each measurement is the best of five rounds; the recorder's
queue is emptied every 10,000 events, as its flusher does (past 50,000 it would drop).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from _cli import run  # benchmarks/_cli.py, beside this script

from loom_kernel.config import TracingConfig
from loom_kernel.messaging import Endpoint
from loom_kernel.protocol import Envelope, HandlerSpec, encode_frames, reserved
from loom_kernel.tracing import NO_TRACER, SpanRecorder, Tracer, tracing_middleware

DATA = {"symbol": "BTC-USDT", "price": 43123.51, "volume": 0.125}


class DropTransport:
    """Encodes what it is given, as the ZeroMQ client does, then drops it."""

    client_id = "bench"
    connected = True

    def publish(self, env: Envelope) -> None:
        env.ts = env.ts or time.time_ns()
        encode_frames(env)

    def inbox(self, owner: str) -> str:
        return reserved.inbox(self.client_id, owner)


def best(rounds: int, run: Any) -> float:
    return min(run() for _ in range(rounds))


def drain(tracer: Tracer | None) -> None:
    """Empty the recorder's queue as its flusher would (it drops spans past 50,000)."""
    if isinstance(tracer, SpanRecorder):
        tracer.pending.clear()


def publish_cost(events: int, tracer: Tracer) -> float:
    endpoint = Endpoint(DropTransport(), "bench", tracer=tracer)  # type: ignore[arg-type]

    def run() -> float:
        started = time.perf_counter()
        for index in range(events):
            endpoint.send(Envelope(topic="bench.tick", data=DATA))
            if index % 10_000 == 9_999:
                drain(tracer)
        return (time.perf_counter() - started) / events

    return best(5, run)


async def handle_cost(events: int, recorder: SpanRecorder | None) -> float:
    async def handler(event: Envelope, ctx: Any) -> None:
        return None

    spec = HandlerSpec("bench.*", "reliable", "handler", agent="bench")
    wrapped = tracing_middleware(recorder)(spec, handler) if recorder else handler
    event = Envelope(
        topic="bench.tick",
        id="e1",
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )

    async def run() -> float:
        started = time.perf_counter()
        for index in range(events):
            await wrapped(event, None)
            if index % 10_000 == 9_999:
                drain(recorder)
        return (time.perf_counter() - started) / events

    return min([await run() for _ in range(5)])


async def measure(events: int) -> dict[str, float]:
    recorder = SpanRecorder(TracingConfig())
    recorder.service = "loom:bench"
    plain_publish = publish_cost(events, NO_TRACER)
    traced_publish = publish_cost(events, recorder)
    plain_handle = await handle_cost(events, None)
    traced_handle = await handle_cost(events, recorder)
    return {
        "events": events,
        "publish_untraced_us": round(plain_publish * 1e6, 3),
        "publish_traced_us": round(traced_publish * 1e6, 3),
        "publish_span_cost_us": round((traced_publish - plain_publish) * 1e6, 3),
        "publish_ratio": round(traced_publish / plain_publish, 3),
        "handle_untraced_us": round(plain_handle * 1e6, 3),
        "handle_traced_us": round(traced_handle * 1e6, 3),
        "handle_span_cost_us": round((traced_handle - plain_handle) * 1e6, 3),
        "handle_ratio": round(traced_handle / plain_handle, 3),
    }


if __name__ == "__main__":
    run(__doc__, lambda events: asyncio.run(measure(events)))
