"""``loom bench --backend nats``: Loom on NATS beside Loom on ZeroMQ, and raw nats-py beside
raw pyzmq, in one run, each in fresh processes on loopback:

1. **raw nats-py** — a publisher process sends ``count`` ~100 B messages on one subject,
   as fast as nats-py takes them, to a subscriber process (``nats bench``'s pub/sub):
   NATS's baseline, as raw pyzmq is ZeroMQ's (:func:`~.bus.measure_raw`);
2. **Loom throughput** — the cross-process run of :mod:`.bus` (an agent's handler
   counts), once on an embedded ZeroMQ broker and once on a local ``nats-server``;
3. **latency** — publish → handler at a fixed rate, on both;
4. **reliable on NATS** — a 3-node cluster, stream replicas = 3, the topic
   ``[eventlog] reliable``: JetStream acknowledges every event, a durable consumer
   handles it; then the same while the stream's leader is killed (``kill -9``) a third
   of the way through: events lost and handled twice are counted.

The servers are local ``nats-server`` processes (:mod:`~loom_kernel.bus.nats.server`).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...bus.nats.server import LocalCluster, local_cluster
from .bus import BENCH_BODY, measure_latency, measure_loom, measure_raw

__all__ = ["measure_raw_nats", "run_nats_bench"]

_SUBJECT = "bench.raw"


# -- raw nats-py -----------------------------------------------------------------------


def _raw_nats_receiver(url: str, ready: Any, results: Any, count: int) -> None:
    asyncio.run(_raw_nats_receive(url, ready, results, count))


async def _raw_nats_receive(url: str, ready: Any, results: Any, count: int) -> None:
    import nats

    nc = await nats.connect(url)
    done = asyncio.Event()
    state = {"received": 0, "first": 0.0, "last": 0.0}

    async def take(msg: Any) -> None:
        state["received"] += 1
        state["last"] = time.perf_counter()
        if state["received"] == 1:
            state["first"] = state["last"]
        if state["received"] >= count:
            done.set()

    await nc.subscribe(_SUBJECT, cb=take, pending_msgs_limit=-1, pending_bytes_limit=-1)
    await nc.flush()
    ready.set()
    seen = -1
    while not done.is_set() and state["received"] != seen:  # stops once traffic stops
        seen = state["received"]
        await asyncio.wait([asyncio.ensure_future(done.wait())], timeout=1.0 if seen else 60)
    await nc.close()
    results.put({"received": state["received"], "seconds": state["last"] - state["first"]})


def _raw_nats_sender(url: str, count: int) -> None:
    asyncio.run(_raw_nats_send(url, count))


async def _raw_nats_send(url: str, count: int) -> None:
    import nats

    nc = await nats.connect(url, pending_size=256 * 1024 * 1024)
    publish = nc.publish
    for index in range(count):
        await publish(_SUBJECT, BENCH_BODY)
        if index % 10_000 == 9_999:
            await nc.flush()  # keep within the server's per-client buffers, as nats bench does
    await nc.flush()
    await nc.close()


def measure_raw_nats(url: str, count: int) -> dict[str, float]:
    """Raw nats-py, one publisher process to one subscriber process."""
    spawn = mp.get_context("spawn")
    ready, results = spawn.Event(), spawn.Queue()
    receiver = spawn.Process(target=_raw_nats_receiver, args=(url, ready, results, count))
    receiver.start()
    if not ready.wait(60):
        receiver.kill()
        raise RuntimeError("the raw nats-py receiver did not start within 60 s")
    sender = spawn.Process(target=_raw_nats_sender, args=(url, count))
    sender.start()
    outcome = results.get(timeout=300)
    sender.join(30)
    receiver.join(30)
    seconds = max(outcome["seconds"], 1e-9)
    return {"received": outcome["received"], "eps": outcome["received"] / seconds}


# -- reliable on a cluster ---------------------------------------------------------------


def _nats_toml(urls: list[str], replicas: int = 1, reliable: bool = False) -> str:
    servers = ", ".join(f'"{url}"' for url in urls)
    text = f'[bus]\nbackend = "nats"\nservers = [{servers}]\nstream_replicas = {replicas}\n'
    text += "[tracing]\nenabled = false\n"
    if reliable:
        text += '[eventlog]\nenabled = true\ntopics = ["bench.*"]\nreliable = ["bench.*"]\n'
    return text


def _reliable_receiver(project: str, ready: Any, results: Any, count: int, progress: Any) -> None:
    asyncio.run(_reliable_receive(Path(project), ready, results, count, progress))


async def _reliable_receive(
    project: Path, ready: Any, results: Any, count: int, progress: Any
) -> None:
    from ...agents import Agent, on_event
    from ...runtime import open_runtime

    seen: list[int] = []
    unique: set[int] = set()
    done = asyncio.Event()
    clock = {"first": 0.0, "last": 0.0}

    class Tally(Agent):
        @on_event("bench.*")
        async def take(self, event: Any, ctx: Any) -> None:
            clock["last"] = time.perf_counter()
            clock["first"] = clock["first"] or clock["last"]
            seen.append(event.data["n"])
            unique.add(event.data["n"])
            progress.value = len(seen)
            if len(unique) >= count:
                done.set()

    async with open_runtime(project / "loom.toml") as rt:
        await rt.start(Tally("tally"))
        ready.set()
        last = -1
        while not done.is_set() and len(seen) != last:  # a leader election pauses ~5-10 s
            last = len(seen)
            await asyncio.wait([asyncio.ensure_future(done.wait())], timeout=20.0)
    results.put({"received": len(unique), "twice": len(seen) - len(unique),
                 "seconds": clock["last"] - clock["first"]})  # fmt: skip


def _reliable_sender(project: str, count: int, rate: float, results: Any) -> None:
    asyncio.run(_reliable_send(Path(project), count, rate, results))


async def _reliable_send(project: Path, count: int, rate: float, results: Any) -> None:
    from ...errors import BusError
    from ...protocol import Envelope
    from ...runtime import open_runtime

    async with open_runtime(project / "loom.toml") as rt:
        send = rt.context.endpoint.send
        loop = asyncio.get_running_loop()
        start, sent = loop.time(), 0
        while sent < count:
            due = count if rate <= 0 else min(count, int((loop.time() - start) * rate) + 1)
            while sent < due:
                try:
                    send(Envelope(topic="bench.tick", data={"n": sent}))
                except BusError:  # [eventlog] max_in_flight: wait for JetStream's acks
                    await rt.wait_acknowledged(120)
                    continue
                sent += 1
                if sent % 1000 == 0:
                    break
            await asyncio.sleep(0 if rate <= 0 else 0.001)
        await rt.wait_acknowledged(120)
        results.put(rt.transport.statistics().durability)


async def _leader(cluster: LocalCluster) -> int:
    import nats

    nc = await nats.connect(cluster.urls)
    try:
        info = await nc.jetstream().stream_info("LOOM")
        return int(info.cluster.leader.removeprefix("n"))
    finally:
        await nc.close()


async def measure_reliable(
    cluster: LocalCluster, count: int, rate: float = 0, kill_leader: bool = False
) -> dict[str, Any]:
    """Reliable events through a stream with 3 replicas, to a durable consumer in another
    process; with ``kill_leader``, the stream's leader is killed a third of the way."""
    spawn = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="loom-bench-nats-") as folder:
        (Path(folder) / "loom.toml").write_text(_nats_toml(cluster.urls, 3, reliable=True))
        ready, results, acks = spawn.Event(), spawn.Queue(), spawn.Queue()
        progress = spawn.RawValue("q", 0)  # events handled so far
        receiver = spawn.Process(
            target=_reliable_receiver, args=(folder, ready, results, count, progress)
        )
        receiver.start()
        killed = None
        try:
            if not await asyncio.to_thread(ready.wait, 60):
                raise RuntimeError("the reliable receiver did not start within 60 s")
            sender = spawn.Process(target=_reliable_sender, args=(folder, count, rate, acks))
            sender.start()
            if kill_leader:  # once a third is handled (another process's counter: polled)
                while progress.value < count // 3 and receiver.is_alive():  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                killed = await _leader(cluster)
                await cluster.kill(killed)
            outcome = await asyncio.to_thread(results.get, True, 600)
            durability = await asyncio.to_thread(acks.get, True, 120)
            await asyncio.to_thread(sender.join, 30)
        finally:
            for process in (receiver,):
                process.join(10)
                if process.is_alive():
                    process.kill()
            if killed is not None:
                await cluster.restart(killed)
    seconds = max(outcome["seconds"], 1e-9)
    return {
        "sent": count, "received": outcome["received"], "lost": count - outcome["received"],
        "twice": outcome["twice"], "eps": round(outcome["received"] / seconds),
        "resent": durability.get("resent", 0), "killed": None if killed is None else f"n{killed}",
    }  # fmt: skip


# -- the run -------------------------------------------------------------------------------


def run_nats_bench(
    count: int, rate: int, duration: float, reliable: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Every measurement of the module docstring, in this order; figures and ratios."""
    return asyncio.run(_run(count, rate, duration, reliable, progress))


async def _run(
    count: int, rate: int, duration: float, reliable: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="loom-bench-servers-") as folder:
        async with local_cluster(1, Path(folder) / "one") as one:
            url = one.urls[0]
            progress(f"raw nats-py: {count:,} messages across two processes")
            raw_nats = await asyncio.to_thread(measure_raw_nats, url, count)
            progress(f"raw pyzmq: {count:,} messages across two processes")
            raw_zmq = await asyncio.to_thread(measure_raw, count)
            progress(f"Loom on NATS: {count:,} events to a handler in another process")
            on_nats = await asyncio.to_thread(measure_loom, count, settings=_nats_toml([url]))
            progress(f"Loom on ZeroMQ: {count:,} events to a handler in another process")
            on_zmq = await asyncio.to_thread(measure_loom, count)
            progress(f"latency at {rate:,} ev/s for {duration:g} s, on both")
            lat_nats = await asyncio.to_thread(measure_latency, rate, duration, _nats_toml([url]))
            lat_zmq = await asyncio.to_thread(measure_latency, rate, duration)
        async with local_cluster(3, Path(folder) / "three") as cluster:
            progress(f"reliable on 3 nodes (replicas = 3): {reliable:,} events")
            steady = await measure_reliable(cluster, reliable)
            progress(f"reliable at 2,000 ev/s, the stream leader killed: {reliable:,} events")
            kill = await measure_reliable(cluster, reliable, rate=2000, kill_leader=True)
    return _figures(raw_nats, raw_zmq, on_nats, on_zmq, lat_nats, lat_zmq, steady, kill)


def _figures(*parts: dict[str, Any]) -> dict[str, Any]:
    raw_nats, raw_zmq, on_nats, on_zmq, lat_nats, lat_zmq, steady, kill = parts
    return {
        "throughput": {
            "raw_nats_py_eps": round(raw_nats["eps"]), "raw_pyzmq_eps": round(raw_zmq["eps"]),
            "loom_nats_eps": round(on_nats["eps"]), "loom_zeromq_eps": round(on_zmq["eps"]),
            "nats_ratio_to_raw": round(on_nats["eps"] / raw_nats["eps"], 3),
            "zeromq_ratio_to_raw": round(on_zmq["eps"] / raw_zmq["eps"], 3),
            "nats_to_zeromq": round(on_nats["eps"] / on_zmq["eps"], 3),
            "received": {"nats": on_nats["received"], "zeromq": on_zmq["received"]},
        },
        "latency": {"nats": lat_nats, "zeromq": lat_zmq},
        "reliable": steady,
        "leader_killed": kill,
    }  # fmt: skip
