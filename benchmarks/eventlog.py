"""Event log benchmark: how fast the log records what the bus carries.

    python benchmarks/eventlog.py [--count N] [--rates 0,50000] [--json]

Measured on this machine, in one run, each beside its baseline:

1. **store** — ``EventLog.append`` alone, batches of 2,000 events of ~100 B of data
   (header encoded, stream looked up, rows inserted, one transaction per batch); its
   baseline is raw SQLite: ``executemany`` of the same rows into a WAL table with the
   same indexes, same batches, no Loom. Both also per CPU second of the process (on a
   loaded machine, wall-clock rates say more about the other work than about the log).
2. **bus → log** — a process runs the bus and the event log (an embedded runtime with
   ``[eventlog] enabled``); a second process publishes ``count`` events on ``bench.tick``
   at each ``--rates`` (0: as fast as it can). The rate is events recorded per second
   from the first event taken to the last one written. Its baseline is the same bus and
   publisher with the log off and a batched subscription in the bus's process counting
   the events instead. ``lost``: sequence gaps seen by the bus's process.

See docs/benchmarks.md for figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loom_kernel import Envelope, open_runtime
from loom_kernel.durability import EventLog
from loom_kernel.protocol import encode_data, new_id

DATA = {"symbol": "BTC-USDT", "price": 43123.51, "volume": 0.125, "bid": 43123.5, "ask": 43123.6}


def measure_raw_sqlite(count: int, folder: Path) -> dict[str, float]:
    db = sqlite3.connect(folder / "raw.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(
        "CREATE TABLE events (pos INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER, "
        "stream INTEGER, seq INTEGER, header BLOB, payload BLOB)"
    )
    db.execute("CREATE INDEX events_ts ON events (ts)")
    db.execute("CREATE UNIQUE INDEX events_stream ON events (stream, seq)")
    payload, _ = encode_data(DATA)
    header = b"x" * 150  # about an encoded envelope header
    rows = [(time.time_ns(), i % 10, i // 10 + 1, header, payload) for i in range(count)]
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, count, 2000):
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO events (ts, stream, seq, header, payload) VALUES (?, ?, ?, ?, ?)",
            rows[start : start + 2000],
        )
        db.execute("COMMIT")
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    db.close()
    return {"events": count, "eps": round(count / seconds), "per_cpu_s": round(count / cpu)}


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
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, count, 2000):
        log.append(events[start : start + 2000])
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    log.close()
    return {"events": count, "eps": round(count / seconds), "per_cpu_s": round(count / cpu)}


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


async def measure_bus(count: int, folder: Path, rate: float, *, record: bool) -> dict[str, Any]:
    """The publisher's events taken by the bus's process: recorded by the event log
    (``record``), or, for the baseline, only counted by a batched subscription."""
    (folder / "loom.toml").write_text(
        '[bus]\nmode = "auto"\n[tracing]\nenabled = false\n'
        f"[eventlog]\nenabled = {'true' if record else 'false'}\n"
    )
    async with open_runtime(folder / "loom.toml") as rt:
        service = await rt.start_event_log()  # the log this process runs (already started)
        if record and service is None:
            raise SystemExit("the event log did not start: is [eventlog] enabled?")
        counted = [0]
        counter = None if record else asyncio.create_task(_count(rt, counted))
        await asyncio.sleep(0.2)  # the counting subscription is live
        done = (lambda: service.recorded) if service is not None else (lambda: counted[0])
        # still busy while events wait for the writer (a batch may take a while)
        busy = (lambda: service.received > service.written) if service else (lambda: False)
        sender = mp.get_context("spawn").Process(target=_publisher, args=(str(folder), count, rate))
        sender.start()
        seconds = await _time_until_idle(done, busy, count)
        sender.join(30)
        if counter is not None:
            counter.cancel()
        taken = done()
    return {
        "rate": rate,
        "events": count,
        "taken": taken,
        "lost": rt.client.statistics().lost,
        "dropped": service.dropped if service is not None else 0,
        "eps": round(taken / max(seconds, 1e-9)),
    }


async def _count(rt: Any, counted: list[int]) -> None:
    sub = await rt.subscribe("bench.*", qos="batched", max_size=2000, max_delay=0.01)
    async for batch in sub:
        counted[0] += len(batch)


async def _time_until_idle(done: Any, busy: Any, count: int) -> float:
    """Seconds from the first event taken to the last (2 s without one, while not
    ``busy``, ends it)."""
    first = None
    deadline = time.monotonic() + 120
    idle_since, last_seen = time.monotonic(), 0
    while time.monotonic() < deadline:
        await asyncio.sleep(0.005)
        if first is None and done():
            first = time.perf_counter()
        if done() != last_seen or busy():
            last_seen, idle_since = done(), time.monotonic()
        if done() >= count or (first and time.monotonic() - idle_since > 2.0):
            break
    seconds = time.perf_counter() - (first or time.perf_counter())
    return seconds - 2.0 if done() < count else seconds


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
        raw = measure_raw_sqlite(args.count, Path(folder))
        store = measure_store(args.count, Path(folder))
        runs = []
        for index, rate in enumerate(float(r) for r in args.rates.split(",")):
            bus_folder = Path(folder) / f"bus-{index}"
            bus_folder.mkdir()
            base = Path(folder) / f"base-{index}"
            base.mkdir()
            baseline = asyncio.run(measure_bus(args.count, base, rate, record=False))
            recorded = asyncio.run(measure_bus(args.count, bus_folder, rate, record=True))
            runs.append({"baseline": baseline, "recorded": recorded})
    if args.json:
        print(json.dumps({"raw_sqlite": raw, "store": store, "bus_to_log": runs}))
        return
    print(
        f"raw SQLite executemany (baseline): {raw['eps']:,} rows/s, {raw['per_cpu_s']:,} per "
        f"CPU second ({raw['events']:,} rows)"
    )
    print(
        f"EventLog.append alone: {store['eps']:,} events/s, {store['per_cpu_s']:,} per CPU "
        f"second ({store['events']:,} events)"
    )
    for pair in runs:
        for what, run in (("counted", pair["baseline"]), ("recorded", pair["recorded"])):
            offered = f"{run['rate']:,.0f}/s" if run["rate"] > 0 else "as fast as it can"
            where = "bus → log" if what == "recorded" else "bus → subscriber (baseline)"
            print(
                f"{where}, publisher in another process at {offered}: {run['eps']:,} "
                f"events/s {what}, {run['taken']:,} of {run['events']:,}, {run['lost']:,} lost"
                + (f", {run['dropped']:,} dropped by the log" if run["dropped"] else "")
            )


if __name__ == "__main__":
    main()
