"""Two agents of one runtime: a publisher and a counting ``@on_event`` agent.

    python benchmarks/inprocess.py [--count 200000] [--no-local] [--no-batching] [--no-filter]

What ``loom bench`` measures as "in process", as a plain script that also runs against an
older checkout (``PYTHONPATH=<checkout> python benchmarks/inprocess.py``): how it was
measured before in-process delivery existed. ``--no-local`` / ``--no-batching`` turn
``[bus] local_delivery`` / ``[bus] batching`` off (everything goes round the embedded
broker); ``--no-filter`` turns ``[bus] filter_at_source`` off (the events still reach the
handler in process, and also go to the broker, which nobody else listens to). Prints
events/s at the handler, and what the client counted.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from loom_kernel import Agent, Envelope, on_event, open_runtime

DATA = {"symbol": "BTC-USDT", "price": 43123.51, "volume": 0.125, "bid": 43123.5, "ask": 43123.6}


class Counter(Agent):
    def __init__(self, agent_id: str):
        super().__init__(agent_id)
        self.n, self.first, self.last = 0, 0.0, 0.0

    @on_event("bench.*")
    async def count(self, event, ctx) -> None:
        self.n += 1
        if self.n == 1:
            self.first = time.perf_counter()
        self.last = time.perf_counter()


async def measure(count: int, bus: str) -> str:
    folder = Path(tempfile.mkdtemp(prefix="loom-inprocess-"))
    (folder / "loom.toml").write_text(
        f'[bus]\nmode = "embedded"\n{bus}[tracing]\nenabled = false\n'
    )
    async with open_runtime(folder / "loom.toml") as rt:
        counter = Counter("counter")
        await rt.start(counter)
        send = rt.context.endpoint.send
        for index in range(count):
            send(Envelope(topic="bench.tick", data=DATA))
            if index % 2000 == 1999:
                await asyncio.sleep(0)
        deadline = time.monotonic() + 60
        while counter.n < count and time.monotonic() < deadline:
            seen = counter.n
            await asyncio.sleep(1.0)
            if counter.n == seen:
                break  # nothing more comes: the rest was lost
        stats = rt.client.statistics()
    rate = counter.n / max(counter.last - counter.first, 1e-9)
    return (
        f"in process: {counter.n:,} of {count:,} handled, {rate:,.0f} events/s at the handler; "
        f"client: {getattr(stats, 'local', 0):,} delivered in process, "
        f"{getattr(stats, 'batches', 0):,} batches sent, "
        f"{getattr(stats, 'unheard', 0):,} not sent (nobody else listens), {stats.lost:,} lost"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200_000)
    parser.add_argument("--no-local", action="store_true")
    parser.add_argument("--no-batching", action="store_true")
    parser.add_argument("--no-filter", action="store_true")
    args = parser.parse_args()
    bus = (
        ("local_delivery = false\n" if args.no_local else "")
        + ("batching = false\n" if args.no_batching else "")
        + ("filter_at_source = false\n" if args.no_filter else "")
    )
    print(asyncio.run(measure(args.count, bus)))


if __name__ == "__main__":
    main()
