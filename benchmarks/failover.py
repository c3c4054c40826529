"""Bus failover: how long the project's bus is gone when its host process is killed, and
what is lost meanwhile.

    python benchmarks/failover.py [--rounds 5] [--rate 1000] [--json]

A temporary project runs two worker processes in ``[bus] mode = "auto"`` (the first one
hosts the bus, the other may take it over), each with an agent answering
``failover.echo``. This process joins in mode ``connect`` (it never hosts) and publishes
``tick.n`` at ``--rate`` events per second while it reads them back. Each round kills
the bus's host with SIGKILL (the other worker takes the bus over), measures, and then
starts a new worker in its place:

- ``detected_s``: from the kill to this process finding the bus lost (no broker beat
  for ``[bus] lost_after``);
- ``outage_s``: from the kill to this process's client answering again on the new host
  (the failover: detection, takeover at the same address, resubscription);
- ``answered_s``: from the kill to a request answered by an agent;
- ``lost``: ticks lost in the round (sequence gaps seen by the subscriber), against
  ``published``. The target is a failover under 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from signal import SIGKILL
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from loom_kernel import Agent, BusError, on_event, open_runtime, run  # noqa: E402
from loom_kernel.config import parse_config  # noqa: E402
from loom_kernel.errors import LoomTimeoutError  # noqa: E402

BOUND = 30.0  # seconds: the bound of every wait


class Echo(Agent):
    @on_event("failover.echo")
    async def echo(self, event, ctx) -> None:
        await ctx.reply(event, {"pid": os.getpid()})


def record(project: Path) -> dict[str, Any]:
    return json.loads((project / ".loom" / "bus.json").read_text())


async def start_worker(project: Path) -> asyncio.subprocess.Process:
    log = (project / f"worker-{time.monotonic_ns()}.log").open("wb")
    return await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--worker", cwd=project, stdout=log, stderr=log,
        env={**os.environ, "PYTHONPATH": str(REPO)}, start_new_session=True,
    )  # fmt: skip


async def until(condition, what: str) -> float:
    """Poll ``condition`` every 2 ms; the loop time when it held."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while not condition():
        if loop.time() > deadline:
            raise SystemExit(f"{what}: not within {BOUND:g} s")
        await asyncio.sleep(0.002)
    return loop.time()


async def answered(rt) -> float:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BOUND
    while True:
        try:
            await rt.request("failover.echo", None, timeout=0.25)
            return loop.time()
        except (BusError, LoomTimeoutError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.01)


async def tick(rt, rate: float, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    started, n = loop.time(), 0
    while not stop.is_set():
        due = int((loop.time() - started) * rate)
        while n < due:
            n += 1
            await rt.emit("tick.n", n)
        await asyncio.sleep(0.001)


async def drain(ticks, counts: dict[str, int]) -> None:
    async for _ in ticks:
        counts["received"] += 1


async def one_round(rt, project: Path, workers: dict[int, Any], ticks) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    host = record(project)["pid"]
    lost_before, published_before = ticks.statistics().lost, rt.client.statistics().published
    bus = rt.client.statistics().bus
    killed = loop.time()
    os.kill(host, SIGKILL)
    await workers.pop(host).wait()
    # counters, not states: a state may last less than a poll
    detected = await until(lambda: rt.client.statistics().bus["lost"] > bus["lost"], "loss")
    up = await until(lambda: rt.client.statistics().bus["failovers"] > bus["failovers"], "up")
    answer = await answered(rt)
    replacement = await start_worker(project)  # after: the survivor is the one taking over
    workers[replacement.pid] = replacement
    await asyncio.sleep(2.0)  # ticks published around the failover reach the subscriber
    return {
        "detected_s": round(detected - killed, 2),
        "outage_s": round(up - killed, 2),
        "answered_s": round(answer - killed, 2),
        "new_host": record(project)["pid"],
        "published": rt.client.statistics().published - published_before,
        "lost": ticks.statistics().lost - lost_before,
    }


async def measure(rounds: int, rate: float, quiet: bool) -> list[dict[str, Any]]:
    project = Path(tempfile.mkdtemp(prefix="loom-failover-"))
    (project / "loom.toml").write_text("[runtime]\nheartbeat_interval = 0.2\n")
    workers = {}
    first = await start_worker(project)
    workers[first.pid] = first
    await until(lambda: (project / ".loom" / "bus.json").exists(), "first host")
    second = await start_worker(project)
    workers[second.pid] = second
    address = record(project)["publish"]
    config = parse_config({"bus": {"mode": "connect", "url": address}}, path=project / "x.toml")
    results = []
    try:
        async with open_runtime(config) as rt:
            ticks = await rt.subscribe("tick.n", qos="reliable")
            counts = {"received": 0}
            stop = asyncio.Event()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(tick(rt, rate, stop))
                reader = tasks.create_task(drain(ticks, counts))
                await answered(rt)
                await asyncio.sleep(1.0)  # both workers up, ticks flowing
                for n in range(rounds):
                    results.append(await one_round(rt, project, workers, ticks))
                    if not quiet:
                        print(f"round {n}: {json.dumps(results[-1])}", flush=True)
                stop.set()
                reader.cancel()
    finally:
        for proc in workers.values():
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=1000.0, help="ticks per second")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker:
        run(Echo(f"echo-{os.getpid()}"))
        return
    if options.rounds < 1 or options.rate <= 0:
        parser.error("--rounds must be >= 1 and --rate > 0")
    results = asyncio.run(measure(options.rounds, options.rate, options.json))
    summary = {
        key: max(r[key] for r in results) for key in ("detected_s", "outage_s", "answered_s")
    }
    summary |= {"lost": sum(r["lost"] for r in results),
                "published": sum(r["published"] for r in results)}  # fmt: skip
    if options.json:
        print(json.dumps({"rounds": results, "worst": summary}))
    else:
        print(f"worst of {len(results)} rounds: {json.dumps(summary)}")


if __name__ == "__main__":
    main()
