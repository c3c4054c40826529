"""Hot reload under load: how long a swap takes, and what it loses.

    python benchmarks/reload_under_load.py [--rate 1000] [--seconds 10] [--reloads 40] [--json]

One process, an embedded bus: a producer agent emits numbered events at ``--rate`` per
second; a consumer agent records every number it handles in its ``state``; meanwhile the
consumer is reloaded ``--reloads`` times (a new class each time, as a notebook cell run
again would give). At the end: reload durations (``ReloadResult.seconds``: new version
built, subscriptions matched, on_reload, swap), p50/p99/max, and the events lost (sent,
never handled) and handled twice.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from loom_kernel import Agent, on_event, open_runtime
from loom_kernel.config import parse_config
from loom_kernel.stats import percentile


def consumer_class() -> type[Agent]:
    class Consumer(Agent):
        @on_event("load.*")
        async def handle(self, event: Any, ctx: Any) -> None:
            self.state.setdefault("seen", []).append(event.data)

    return Consumer


class Producer(Agent):
    rate = 1000.0
    count = 10_000

    async def run(self, ctx: Any) -> None:
        loop = asyncio.get_running_loop()
        start, sent = loop.time(), 0
        while sent < self.count:
            due = min(self.count, int((loop.time() - start) * self.rate) + 1)
            while sent < due:
                await ctx.emit("load.tick", sent)
                sent += 1
            await asyncio.sleep(0.001)


async def measure(rate: float, seconds: float, reloads: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="loom-reload-"))
    config = parse_config({"tracing": {"enabled": False}}, path=folder / "loom.toml")
    Producer.rate, Producer.count = rate, int(rate * seconds)
    durations: list[float] = []
    async with open_runtime(config) as rt:
        await rt.start(consumer_class()("consumer"))
        await rt.start(Producer("producer"))
        gap = seconds / (reloads + 1)
        for _ in range(reloads):
            await asyncio.sleep(gap)
            durations.append((await rt.reload("consumer", consumer_class())).seconds)
        runner = rt.agents["consumer"]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds + 10
        while len(runner.agent.state.get("seen", [])) < Producer.count:
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
        seen = runner.agent.state.get("seen", [])
    ordered = sorted(durations)
    return {
        "rate_eps": rate,
        "events": Producer.count,
        "reloads": len(durations),
        "reload_p50_ms": round(percentile(ordered, 50) * 1000, 3),
        "reload_p99_ms": round(percentile(ordered, 99) * 1000, 3),
        "reload_max_ms": round(ordered[-1] * 1000, 3),
        "lost": Producer.count - len(set(seen)),
        "handled_twice": len(seen) - len(set(seen)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--reloads", type=int, default=40)
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    result = asyncio.run(measure(options.rate, options.seconds, options.reloads))
    if options.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>15}  {value}")


if __name__ == "__main__":
    main()
