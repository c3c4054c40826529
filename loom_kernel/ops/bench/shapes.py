"""``loom bench``: two more shapes of traffic beside the 1 → 1 run of :mod:`.bus`.

- **In process**: a publisher and an ``@on_event`` agent in one runtime (both in one
  notebook, the most common case): events reach the handler without the broker
  (``[bus] local_delivery``), and, with no other client subscribed, not to the bus at all
  (``[bus] filter_at_source``).
- **Fan-out**: one publisher process, 8 subscribing agents in 4 processes (2 each), all
  on ``bench.*``: what each agent gets, and the deliveries per second in all.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import tempfile
from pathlib import Path
from typing import Any

from .bus import BENCH_DATA, counter_class, loom_receiver, loom_sender, wait_counted

__all__ = ["measure_fanout", "measure_inprocess"]

_TOML = '[bus]\nmode = "auto"\n[tracing]\nenabled = false\n'


def _inprocess(project: str, count: int, result_queue: Any) -> None:
    asyncio.run(_inprocess_run(Path(project), count, result_queue))


async def _inprocess_run(project: Path, count: int, result_queue: Any) -> None:
    from ...protocol import Envelope
    from ...runtime import open_runtime

    counter = counter_class()("bench-counter", count)
    async with open_runtime(project / "loom.toml") as rt:
        await rt.start(counter)
        send = rt.context.endpoint.send
        for index in range(count):
            send(Envelope(topic="bench.tick", data=BENCH_DATA))
            if index % 2000 == 1999:
                await asyncio.sleep(0)
        await wait_counted([counter])
        stats = rt.client.statistics()
    result_queue.put(
        {
            "received": counter.received,
            "seconds": counter.last - counter.first,
            "local": stats.local,
        }
    )


def measure_inprocess(count: int) -> dict[str, float]:
    """Two agents of one runtime: events/s at the handler."""
    spawn = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="loom-bench-") as folder:
        (Path(folder) / "loom.toml").write_text(_TOML)
        results = spawn.Queue()
        process = spawn.Process(target=_inprocess, args=(folder, count, results))
        process.start()
        try:
            outcome = results.get(timeout=120 + count / 10_000)
        finally:
            process.join(30)
            if process.is_alive():
                process.kill()
    seconds = max(outcome["seconds"], 1e-9)
    return {"received": outcome["received"], "eps": outcome["received"] / seconds}


def measure_fanout(count: int, processes: int = 4, agents: int = 2) -> dict[str, float]:
    """One publisher, ``processes`` times ``agents`` subscribing agents: the slowest agent's
    events/s, and the deliveries per second in all (from the first event received
    anywhere to the last)."""
    spawn = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="loom-bench-") as folder:
        (Path(folder) / "loom.toml").write_text(_TOML)
        results = spawn.Queue()
        receivers = []
        try:
            for _ in range(processes):  # the first embeds the bus; the others join it
                ready = spawn.Event()
                receiver = spawn.Process(
                    target=loom_receiver, args=(folder, ready, results, count, agents)
                )
                receiver.start()
                receivers.append(receiver)
                if not ready.wait(60):
                    raise RuntimeError("a fan-out receiver did not start within 60 s")
            sender = spawn.Process(target=loom_sender, args=(folder, count, 0))
            sender.start()
            outcomes = [results.get(timeout=180 + count / 10_000) for _ in receivers]
            sender.join(30)
        finally:
            for process in receivers:
                process.join(30)
                if process.is_alive():
                    process.kill()
    per_agent = [rate for outcome in outcomes for rate in outcome["per_agent"]]
    received = sum(outcome["received"] * agents for outcome in outcomes)
    seconds = max(max(o["seconds"] for o in outcomes), 1e-9)
    return {
        "agents": processes * agents,
        "received_min": min(o["received"] for o in outcomes),
        "slowest_agent_eps": min(per_agent),
        "deliveries_eps": received / seconds,
    }
