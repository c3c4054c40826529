"""What each step of the bus's hot path costs per event, in microseconds, in one process.

    python benchmarks/bus_hot_path.py [--events 200000] [--json]

The steps an event goes through between ``Endpoint.send`` and a handler, each timed alone
over the same small event (the ``loom bench`` payload), best of five rounds:

- ``encode``: the three frames (header struct + JSON, topic bytes);
- ``decode_one``: a three-frame message back into an ``Envelope`` (header and payload);
- ``decode_batched``: the same, per event, for batches of 512 (one call for the headers);
- ``local_copy``: what in-process delivery adds (a copy with the payload decoded afresh);
- ``deliver``: the dispatcher's sequence check, routing (cached) and the mailbox;
- ``deliver_batched``: the same, per event, for batches of 512 (``Dispatcher.deliver_many``:
  the route looked up and the mailbox filled once per batch, as a received batch is);
- ``mailbox_get``: an ``async for`` over a subscription, per event;
- ``backlog_tracked``: objects the garbage collector tracks, per event, in a backlog of
  received events waiting in a mailbox (decoded from batches and delivered): 0 means a
  backlog costs collections nothing (``Envelope`` is ``gc=False``).

Figures to compare one change against the next (``docs/benchmarks.md``), not targets.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

import msgspec
from _cli import run  # benchmarks/_cli.py, beside this script

from loom_kernel.bus.dispatch import Dispatcher
from loom_kernel.bus.qos import Mailbox
from loom_kernel.bus.transport import Subscription
from loom_kernel.protocol.batch import decode_batch, encode_batch
from loom_kernel.protocol.envelope import (
    PROTOCOL_VERSION,
    Envelope,
    decode_data,
    decode_frames,
    encode_data,
    encode_frames,
)
from loom_kernel.protocol.topics import compile_pattern

DATA = {"symbol": "BTC-USDT", "price": 43123.51, "volume": 0.125, "bid": 43123.5, "ask": 43123.6}
BATCH = 512


def event(seq: int) -> Envelope:
    payload, content_type = encode_data(DATA)
    return Envelope(
        topic="bench.tick", data=DATA, payload=payload, content_type=content_type,
        id=f"0123456789ab-{seq:x}", source="bench", ts=time.time_ns(), seq=seq,
    )  # fmt: skip


def timed(events: int, run: Callable[[], None]) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best / events * 1e6


def measure(events: int) -> dict[str, float]:
    envs = [event(i + 1) for i in range(events)]
    frames = [encode_frames(env) for env in envs]
    batches = [
        encode_batch(b"bench.tick", [f[1] for f in frames[i : i + BATCH]],
                     [f[2] for f in frames[i : i + BATCH]])
        for i in range(0, events, BATCH)
    ]  # fmt: skip
    figures = {
        "encode": timed(events, lambda: [encode_frames(env) for env in envs]),
        "decode_one": timed(events, lambda: [decode_frames(f) for f in frames]),
        "decode_batched": timed(events, lambda: [decode_batch(b) for b in batches]),
        "local_copy": timed(
            events,
            lambda: [
                msgspec.structs.replace(
                    env, v=PROTOCOL_VERSION, data=decode_data(env.payload, env.content_type)
                )
                for env in envs
            ],
        ),
    }

    def deliver() -> None:
        dispatcher = Dispatcher("loom.reply.bench.")
        dispatcher.add(Subscription(None, compile_pattern("bench.*"), Mailbox(events + 1), ""))  # type: ignore[arg-type]
        for env in envs:
            dispatcher.deliver(env)

    def deliver_batched() -> None:
        dispatcher = Dispatcher("loom.reply.bench.")
        dispatcher.add(Subscription(None, compile_pattern("bench.*"), Mailbox(events + 1), ""))  # type: ignore[arg-type]
        for start in range(0, events, BATCH):
            dispatcher.deliver_many(envs[start : start + BATCH])

    figures["deliver"] = timed(events, deliver)
    figures["deliver_batched"] = timed(events, deliver_batched)
    figures["backlog_tracked"] = backlog_tracked(batches, events)
    figures["mailbox_get"] = asyncio.run(_mailbox_get(events))
    return {key: round(value, 3) for key, value in figures.items()}


def backlog_tracked(batches: list[list[bytes]], events: int) -> float:
    """GC-tracked objects per event held by a backlog of decoded, delivered events."""
    dispatcher = Dispatcher("loom.reply.bench.")
    mailbox = Mailbox(events + 1)
    dispatcher.add(Subscription(None, compile_pattern("bench.*"), mailbox, ""))  # type: ignore[arg-type]
    gc.collect()
    before = len(gc.get_objects())
    for batch in batches:
        dispatcher.deliver_many(decode_batch(batch))
    tracked = len(gc.get_objects()) - before
    assert len(mailbox) == events
    return tracked / events


async def _mailbox_get(events: int) -> float:
    best = float("inf")
    for _ in range(5):
        mailbox = Mailbox(events + 1)
        for n in range(events):
            mailbox.put_nowait(n)
        sub = Subscription(None, compile_pattern("bench.*"), mailbox, "")  # type: ignore[arg-type]
        started, seen = time.perf_counter(), 0
        async for _ in sub:
            seen += 1
            if seen == events:
                break
        best = min(best, time.perf_counter() - started)
    return best / events * 1e6


def show(key: str, value: float) -> str:
    unit = "objects/event" if key == "backlog_tracked" else "µs/event"
    return f"{key:>16}  {value:.3f} {unit}"


if __name__ == "__main__":
    run(__doc__, measure, show)
