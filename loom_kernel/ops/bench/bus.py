"""``loom bench``: the bus measured against raw pyzmq, in one run, across processes.

Three measurements, each in fresh processes (``spawn``), on loopback TCP:

1. **raw pyzmq** — a PUB process sends ``count`` two-frame messages (topic + ~100 B
   body, frame by frame) straight to a SUB process: the baseline.
2. **Loom throughput** — a subscriber process opens a runtime (embedded broker) with
   an agent whose ``@on_event("bench.*")`` handler counts; a publisher process joins
   the same bus by discovery and ``ctx.emit``\\ s ``count`` events as fast as it can.
   Every event crosses the broker and is decoded into an ``Envelope``.
3. **Tracing** — the Loom throughput run again with tracing on and every event sampled
   (a publish span per emit, a handle span per handler run, exported on the bus); the
   cost is ``1 - traced / untraced``. The other runs have tracing off.
4. **Latency** — the same topology, the publisher paced at fixed rates; the handler
   records ``now - event.ts`` for every event. Sent and received are counted.

Rates are taken at the receiver, from its first to its last message.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...security import BROKER, generate_keys

__all__ = ["BenchPlan", "BenchResult", "measure_latency", "measure_loom", "measure_raw"]

BENCH_BODY = b'{"symbol":"BTC-USDT","price":43123.51,"volume":0.125,"bid":43123.5,"ask":43123.6}'
#: What every benchmark event carries (``BENCH_BODY``, as data).
BENCH_DATA = {"symbol": "BTC-USDT", "price": 43123.51, "volume": 0.125, "bid": 43123.5,
              "ask": 43123.6}  # fmt: skip
_IDLE_END = 1.0  # seconds without traffic after which a receiver stops waiting


@dataclass(frozen=True)
class BenchPlan:
    """How much to measure."""

    count: int = 1_000_000
    rates: tuple[int, ...] = (1_000, 10_000)
    duration: float = 10.0

    @classmethod
    def quick(cls) -> BenchPlan:
        return cls(count=200_000, rates=(1_000, 10_000), duration=3.0)


@dataclass
class BenchResult:
    throughput: dict[str, float] = field(default_factory=dict)
    latency: list[dict[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"throughput": self.throughput, "latency": self.latency}


# -- raw pyzmq -----------------------------------------------------------------------


def _raw_receiver(port_queue: Any, result_queue: Any, count: int) -> None:
    import zmq

    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"bench.")
    port = sub.bind_to_random_port("tcp://127.0.0.1")
    port_queue.put(port)
    received, first, last = 0, 0.0, 0.0
    poller = zmq.Poller()
    poller.register(sub, zmq.POLLIN)
    while received < count:
        if not poller.poll(_IDLE_END * 1000 if received else 10_000):
            break
        while True:
            try:
                sub.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            sub.recv()
            received += 1
            if received == 1:
                first = time.perf_counter()
        last = time.perf_counter()
    result_queue.put({"received": received, "seconds": last - first})
    sub.close(0)
    ctx.term()


def _raw_sender(port: int, count: int, ready: Any) -> None:
    import zmq

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.connect(f"tcp://127.0.0.1:{port}")
    time.sleep(0.3)  # let the subscription reach this PUB (raw ZeroMQ has no handshake)
    ready.set()
    topic = b"bench.raw"
    send = pub.send
    for _ in range(count):
        send(topic, zmq.SNDMORE)
        send(BENCH_BODY)
    pub.close(linger=10_000)
    ctx.term()


def measure_raw(count: int) -> dict[str, float]:
    spawn = mp.get_context("spawn")
    ports, results, ready = spawn.Queue(), spawn.Queue(), spawn.Event()
    receiver = spawn.Process(target=_raw_receiver, args=(ports, results, count))
    receiver.start()
    port = ports.get(timeout=30)
    sender = spawn.Process(target=_raw_sender, args=(port, count, ready))
    sender.start()
    outcome = results.get(timeout=120)
    sender.join(30)
    receiver.join(30)
    seconds = max(outcome["seconds"], 1e-9)
    return {"received": outcome["received"], "eps": outcome["received"] / seconds}


# -- Loom ------------------------------------------------------------------------------


def loom_receiver(
    project: str, ready: Any, result_queue: Any, expected: int, agents: int = 1
) -> None:
    asyncio.run(_loom_receive(Path(project), ready, result_queue, expected, agents))


def counter_class() -> type:
    from ...agents import Agent, on_event

    class Counter(Agent):
        """Counts ``bench.*`` events (and their latency, when they are marked so)."""

        def __init__(self, agent_id: str, expected: int):
            super().__init__(agent_id)
            self.expected, self.received = expected, 0
            self.first = self.last = 0.0
            self.latencies: list[float] = []
            self.done = asyncio.Event()

        @on_event("bench.*")
        async def count(self, event: Any, ctx: Any) -> None:
            now = time.time_ns()
            self.received += 1
            if self.received == 1:
                self.first = time.perf_counter()
            self.last = time.perf_counter()
            if event.type == "latency":
                self.latencies.append((now - event.ts) / 1e6)
            if self.received >= self.expected:
                self.done.set()

    return Counter


async def wait_counted(counters: list[Any]) -> None:
    """Until every counter has all its events, or none counted more for ``_IDLE_END``."""
    seen = -1
    while not all(c.done.is_set() for c in counters):
        total = sum(c.received for c in counters)
        if total == seen:
            return
        seen = total
        waiting = [asyncio.ensure_future(c.done.wait()) for c in counters if not c.done.is_set()]
        await asyncio.wait(waiting, timeout=_IDLE_END if total else 60)
        for task in waiting:
            task.cancel()


async def _loom_receive(
    project: Path, ready: Any, result_queue: Any, expected: int, agents: int = 1
) -> None:
    from ...runtime import open_runtime

    counter = counter_class()
    counters = [counter(f"bench-counter-{os.getpid()}-{i}", expected) for i in range(agents)]
    async with open_runtime(project / "loom.toml") as rt:
        await rt.start(*counters)
        ready.set()
        await wait_counted(counters)
        stats = rt.client.statistics()
        tracing = rt.tracing.statistics()
    result_queue.put(
        {
            "received": min(c.received for c in counters),
            "seconds": max(c.last for c in counters) - min(c.first for c in counters),
            "per_agent": [c.received / max(c.last - c.first, 1e-9) for c in counters],
            "latencies": counters[0].latencies,
            "lost": stats.lost,
            "spans_exported": tracing.exported,
            "spans_dropped": tracing.dropped,
        }
    )


def loom_sender(project: str, count: int, rate: float) -> None:
    asyncio.run(_loom_send(Path(project), count, rate))


async def _loom_send(project: Path, count: int, rate: float) -> None:
    from ...protocol import Envelope
    from ...runtime import open_runtime

    async with open_runtime(project / "loom.toml") as rt:
        send = rt.context.endpoint.send  # what ctx.emit does, without awaiting per event
        if rate <= 0:
            for index in range(count):
                send(Envelope(topic="bench.tick", data=BENCH_DATA))
                if index % 2000 == 1999:
                    await asyncio.sleep(0)
        else:
            loop = asyncio.get_running_loop()
            start = loop.time()
            sent = 0
            while sent < count:
                due = min(count, int((loop.time() - start) * rate) + 1)
                while sent < due:
                    send(Envelope(topic="bench.tick", data=BENCH_DATA, type="latency"))
                    sent += 1
                await asyncio.sleep(0.0002)
        await asyncio.sleep(0.2)  # let the PUB socket flush before the runtime closes


def _loom_round(
    count: int,
    rate: float,
    *,
    traced: bool = False,
    secured: bool = False,
    settings: str | None = None,
) -> dict[str, Any]:
    """One sender process and one receiver process on a bus; ``settings``, when given, is
    the project's whole ``loom.toml`` (another backend: ``loom bench --backend nats``)."""
    spawn = mp.get_context("spawn")
    # Generous: the run itself, plus process start-up; a rate of 0 means "as fast as possible".
    patience = 120 + (count / rate if rate > 0 else count / 20_000)
    with tempfile.TemporaryDirectory(prefix="loom-bench-") as folder:
        project = Path(folder)
        # Tracing off is the bus alone; on, every event is sampled: a publish span in the
        # publisher, a handle span in the receiver, both exported on the bus in batches.
        tracing = "sample_ratio = 1.0\ncollect = false" if traced else "enabled = false"
        # secured: CURVE between the processes (the sender's tcp link to the broker; the
        # receiver hosts the bus and reaches it in process)
        # and the broker's guard: names, replies and an ACL checked on every message
        security = 'security = "curve"\n' if secured else ""
        acl = '[acl.loom]\npublish = ["bench.*"]\n' if secured else ""
        if secured:
            for name in (BROKER, "loom"):
                generate_keys(project / ".loom" / "keys", name)
        (project / "loom.toml").write_text(
            settings or f'[bus]\nmode = "auto"\n{security}[tracing]\n{tracing}\n{acl}'
        )
        ready, results = spawn.Event(), spawn.Queue()
        receiver = spawn.Process(target=loom_receiver, args=(folder, ready, results, count))
        sender = spawn.Process(target=loom_sender, args=(folder, count, rate))
        receiver.start()
        try:
            if not ready.wait(60):
                raise RuntimeError("the benchmark's receiver did not start within 60 s")
            sender.start()
            outcome = results.get(timeout=patience)
            sender.join(30)
            receiver.join(30)
        finally:
            for process in (sender, receiver):
                if process.is_alive():
                    process.kill()
                    process.join(5)
    return outcome


def measure_loom(
    count: int, *, traced: bool = False, secured: bool = False, settings: str | None = None
) -> dict[str, float]:
    outcome = _loom_round(count, 0, traced=traced, secured=secured, settings=settings)
    seconds = max(outcome["seconds"], 1e-9)
    return {
        "received": outcome["received"],
        "eps": outcome["received"] / seconds,
        "spans_exported": outcome["spans_exported"],
        "spans_dropped": outcome["spans_dropped"],
    }


def measure_latency(rate: int, duration: float, settings: str | None = None) -> dict[str, float]:
    from ...stats import percentile

    count = int(rate * duration)
    outcome = _loom_round(count, rate, settings=settings)
    values = sorted(outcome["latencies"])
    return {
        "rate_eps": rate,
        "p50_ms": round(percentile(values, 50), 3),
        "p99_ms": round(percentile(values, 99), 3),
        "max_ms": round(values[-1], 3) if values else 0.0,
        "sent": count,
        "received": outcome["received"],
    }
