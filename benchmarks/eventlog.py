"""Event log benchmark: how fast the log records what the bus carries.

    python benchmarks/eventlog.py [--count N] [--json]

Two measurements, on this machine:

1. **store** — ``EventLog.append`` alone, batches of 2,000 events of ~100 B of data
   (header encoded, stream looked up, rows inserted, one transaction per batch).
2. **bus → log** — a process runs the bus and the event log (an embedded runtime, as
   ``open_runtime()`` does by default); a second process publishes ``count`` events on
   ``bench.tick`` as fast as it can. The rate is ``recorded / seconds`` from the log's
   first received event to the last one written (its own counters), and nothing may be
   lost on the way (sequence gaps at the log are reported).

See docs/benchmarks.md for figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loom_kernel import Envelope, open_runtime  # noqa: E402
from loom_kernel.durability import EventLog  # noqa: E402
from loom_kernel.protocol import encode_data, new_id  # noqa: E402

DATA = {"symbol": "BTC-USDT", "price": 43123.51, "volume": 0.125, "bid": 43123.5, "ask": 43123.6}


def measure_store(count: int, folder: Path) -> dict[str, float]:
    log = EventLog(folder / "store.db")
    payload, content_type = encode_data(DATA)
    events = [
        Envelope(
            topic=f"bench.tick.{i % 10}",
            source="bench",
            id=new_id(),
            ts=time.time_ns(),
            seq=i // 10 + 1,
            payload=payload,
            content_type=content_type,
        )
        for i in range(count)
    ]
    started = time.perf_counter()
    for start in range(0, count, 2000):
        log.append(events[start : start + 2000])
    seconds = time.perf_counter() - started
    log.close()
    return {"events": count, "eps": round(count / seconds)}


def _publisher(project: str, count: int, rate: float) -> None:
    async def main() -> None:
        async with open_runtime(Path(project) / "loom.toml") as rt:
            send = rt.context.endpoint.send
            loop = asyncio.get_running_loop()
            started, sent = loop.time(), 0
            while sent < count:
                due = count if rate <= 0 else int((loop.time() - started) * rate) + 1
                for _ in range(min(due, count) - sent):
                    send(Envelope(topic="bench.tick", data=DATA))
                    sent += 1
                    if sent % 2000 == 0:
                        break
                await asyncio.sleep(0 if rate <= 0 else 0.0005)
            await asyncio.sleep(0.5)

    asyncio.run(main())


async def measure_bus(count: int, folder: Path, rate: float) -> dict[str, Any]:
    (folder / "loom.toml").write_text('[bus]\nmode = "auto"\n[tracing]\nenabled = false\n')
    async with open_runtime(folder / "loom.toml") as rt:
        service = rt._event_log.service  # the log this process runs
        assert service is not None
        sender = mp.get_context("spawn").Process(
            target=_publisher, args=(str(folder), count, rate)
        )
        sender.start()
        first = None
        deadline = time.monotonic() + 120
        idle_since = time.monotonic()
        last_seen = 0
        while time.monotonic() < deadline:
            await asyncio.sleep(0.005)
            if first is None and service.received:
                first = time.perf_counter()
            if service.recorded != last_seen:
                last_seen, idle_since = service.recorded, time.monotonic()
            if service.recorded >= count or (first and time.monotonic() - idle_since > 2.0):
                break
        ended = time.perf_counter()
        sender.join(30)
        stats = rt.client.statistics()
        recorded = service.recorded
        seconds = ended - (first or ended)
        if recorded < count:
            seconds -= 2.0  # the idle wait
    return {
        "rate": rate,
        "events": count,
        "recorded": recorded,
        "lost": stats.lost,
        "eps": round(recorded / max(seconds, 1e-9)),
        "batches": service.batches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300_000)
    parser.add_argument(
        "--rates", default="0", help="Publisher rates, comma-separated (0: as fast as it can)."
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with tempfile.TemporaryDirectory(prefix="loom-eventlog-bench-") as folder:
        store = measure_store(args.count, Path(folder))
        runs = []
        for index, rate in enumerate(float(r) for r in args.rates.split(",")):
            bus_folder = Path(folder) / f"bus-{index}"
            bus_folder.mkdir()
            runs.append(asyncio.run(measure_bus(args.count, bus_folder, rate)))
    if args.json:
        print(json.dumps({"store": store, "bus_to_log": runs}))
        return
    print(f"EventLog.append alone: {store['eps']:,} events/s ({store['events']:,} events)")
    for run in runs:
        offered = f"{run['rate']:,.0f}/s" if run["rate"] > 0 else "as fast as it can"
        print(
            f"bus → log, publisher in another process at {offered}: {run['eps']:,} events/s "
            f"recorded, {run['recorded']:,} of {run['events']:,}, {run['lost']:,} lost"
        )


if __name__ == "__main__":
    main()
