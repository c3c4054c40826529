"""What a busy host costs the other processes: latency through the bus while the process
hosting it runs Python that never yields (a long cell in a notebook).

    python benchmarks/busy_host.py [--seconds 3] [--json]

The host embeds the bus (``open_runtime``) and then spins in pure Python, holding the GIL.
A child process sends lone messages from a PUB socket to its own SUB socket through the
host's broker, 1,000 a second, and reports the round-trip percentiles. Run twice: with
``[bus] filter_at_source`` on (the broker forwards in a Python loop, which must take the GIL
back from the spinning host: at most every ``sys.getswitchinterval()``, 5 ms) and off
(ZeroMQ's C proxy, which never needs the GIL). An idle host is the baseline of each.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq
from _cli import run  # benchmarks/_cli.py, beside this script

from loom_kernel import open_runtime
from loom_kernel.stats import percentile


def _probe(subscribe: str, publish: str, seconds: float, results: Any) -> None:
    ctx = zmq.Context.instance()
    sub, pub = ctx.socket(zmq.SUB), ctx.socket(zmq.PUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"busy.")
    sub.connect(subscribe)
    pub.connect(publish)
    while True:  # until the subscription is live
        pub.send_multipart([b"busy.ping", b"0"])
        if sub.poll(50):
            break
    while sub.poll(100):
        sub.recv_multipart()
    results.put("ready")
    samples: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        sent = time.perf_counter()
        pub.send_multipart([b"busy.ping", str(sent).encode()])
        if sub.poll(1000):
            sub.recv_multipart()
            samples.append(time.perf_counter() - sent)
        time.sleep(0.001)
    sub.close(0)
    pub.close(0)
    samples.sort()
    results.put([round(percentile(samples, q) * 1000, 3) for q in (50, 99)])


async def _measure(filtering: bool, busy: bool, seconds: float) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        toml = Path(folder) / "loom.toml"
        toml.write_text(
            f'[bus]\nmode = "embedded"\nfilter_at_source = {str(filtering).lower()}\n'
            "[tracing]\nenabled = false\n"
        )
        async with open_runtime(toml) as rt:
            spawn = mp.get_context("spawn")
            results = spawn.Queue()
            address = rt.address
            child = spawn.Process(
                target=_probe, args=(address.subscribe, address.publish, seconds, results)
            )
            child.start()
            await asyncio.to_thread(results.get, True, 60)  # "ready": the probe is live
            end = time.perf_counter() + seconds + 0.5
            while time.perf_counter() < end:
                if busy:
                    sum(i * i for i in range(10_000))  # Python that holds the GIL
                else:
                    await asyncio.sleep(0.01)
            p50_p99 = results.get(timeout=30)
            child.join(10)
    return p50_p99


def measure(seconds: float) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for filtering in (False, True):
        for busy in (False, True):
            key = f"{'counting' if filtering else 'c_proxy'}_{'busy' if busy else 'idle'}"
            result[key + "_p50_p99_ms"] = asyncio.run(_measure(filtering, busy, seconds))
    return result


if __name__ == "__main__":
    run(__doc__, measure, size="seconds", default=3.0)
