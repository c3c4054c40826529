"""Chaos: agents' processes and the bus's host are killed at random, a few rounds.

Three worker processes run agents in ``[bus] mode = "auto"`` (any of them may host the
bus); a ticker process and this test only join (``mode = "connect"``: they never host,
so they can be neither killed with the host nor have to kill themselves). Each round
kills one worker with SIGKILL, the bus's host or another, at random (at least one of
each kind; ``CHAOS_SEED`` replays a run), and starts a new one in its place. Then every
agent must answer again (the time from the kill is printed against the 3 s failover
target) on the same bus address, and the ticks the ticker published must all be either
received or counted lost: the loss counters tell the truth. (Reliable topics with no
loss at all need the event log: ``tests/kernel/durability``.)
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path

import pytest

from loom_kernel import BusError, open_runtime
from loom_kernel.config import parse_config
from loom_kernel.errors import LoomTimeoutError
from tests.conftest import wait_until
from tests.kernel.bus.zeromq.conftest import Children, record, wait_for_agent
from tests.kernel.conftest import STARTUP

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(240)]

ROUNDS = 5
TARGET = 3.0  # seconds: the failover target, reported (the bound below is looser)
WORKERS = ["upper", "echo", "quoter-a"]  # processes, one agent each
ASKED = ["child.echo", "quote.ask"]  # what must be answered again after each round


async def answered(rt, topic: str, bound: float) -> None:
    """Return once ``topic`` is answered (asking again after each failure); bounded."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        try:
            await rt.request(topic, 1, timeout=0.25)
            return
        except (BusError, LoomTimeoutError):
            if loop.time() - started > bound:
                raise
            await asyncio.sleep(0.02)


async def test_random_kills_of_agents_and_of_the_bus_host(
    project: Path, children: Children, monkeypatch: pytest.MonkeyPatch
) -> None:
    workers = {}
    for name in WORKERS:
        workers[name] = await children.start(name)
    await wait_until(lambda: (project / ".loom" / "bus.json").exists(), STARTUP)
    address = record(project)["publish"]
    joining = project / "joining"
    joining.mkdir()
    (joining / "loom.toml").write_text(f'[bus]\nmode = "connect"\nurl = "{address}"\n')
    config = parse_config({"bus": {"mode": "connect", "url": address}}, path=joining / "loom.toml")
    monkeypatch.setenv("LOOM_CONFIG", str(joining / "loom.toml"))  # the ticker's configuration
    await children.start("ticker")
    monkeypatch.delenv("LOOM_CONFIG")
    seed = int(os.environ.get("CHAOS_SEED", time.time()))
    print(f"CHAOS_SEED={seed}")
    rng = random.Random(seed)
    async with open_runtime(config) as rt:
        ticks = await rt.subscribe("tick.n")
        for name in ("child-echo", "child-quoter-a", "child-upper", "child-ticker"):
            await wait_for_agent(rt, name)
        first = (await ticks.get(timeout=STARTUP)).data
        recoveries = []
        # at random, but at least one kill of each kind: the bus's host, an agent only
        kinds = ["host", "agent"] + [rng.choice(["host", "agent"]) for _ in range(ROUNDS - 2)]
        rng.shuffle(kinds)
        for round_, kind in enumerate(kinds):
            host = record(project)["pid"]
            hosting = [name for name, proc in workers.items() if proc.pid == host]
            others = sorted(set(workers) - set(hosting))
            name = rng.choice(hosting if kind == "host" and hosting else others)
            victim = workers[name]
            killed = asyncio.get_running_loop().time()
            await children.kill(victim)
            workers[name] = await children.start(name)
            for topic in ASKED:
                await answered(rt, topic, 30.0)
            seconds = asyncio.get_running_loop().time() - killed
            recoveries.append(seconds)
            after = record(project)
            print(f"round {round_}: killed {name} (pid {victim.pid}, host: {victim.pid == host})"
                  f"; answered {seconds:.2f} s after the kill (target {TARGET} s)")  # fmt: skip
            assert after["publish"] == address  # one bus, at one address, all along
            await wait_for_agent(rt, f"child-{name}")
        last = first
        received = 1
        while ticks.mailbox or last < first + 500:  # everything up to now, and a bit more
            last = (await ticks.get(timeout=STARTUP)).data
            received += 1
        lost = ticks.statistics().lost
    print(json.dumps({"recoveries_s": [round(s, 2) for s in recoveries],
                      "ticks": last - first + 1, "received": received, "lost": lost}))  # fmt: skip
    assert received + lost == last - first + 1
