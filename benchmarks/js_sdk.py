"""Node publish -> Python handler, beside Python publish -> Python handler, in one run.

    make sdk-js && python benchmarks/js_sdk.py [--count 100000] [--rate 1000] [--seconds 3]

Each round runs a fresh bus: a receiver process (a Python runtime hosting the embedded
broker, one counting ``@on_event("bench.*")`` agent: ``loom bench``'s) and a sender
process, either Python (``loom bench``'s sender) or Node (``sdk/js/bench/publisher.mjs``,
the JavaScript SDK). Tracing is off, as in ``loom bench``'s bus figures.

- throughput: ``--count`` events sent as fast as the sender can; events/s at the handler
  (first to last), and how many arrived;
- latency: ``--rate`` events/s for ``--seconds``; publish -> handler p50 / p99 in ms.

The Node figures are also given as a ratio of the Python ones of the same run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from loom_kernel.ops.bench.bus import loom_receiver, loom_sender
from loom_kernel.stats import percentile

PUBLISHER = Path(__file__).resolve().parents[1] / "sdk" / "js" / "bench" / "publisher.mjs"


def one_round(sender: str, count: int, rate: float) -> dict[str, Any]:
    spawn = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="loom-js-bench-") as folder:
        Path(folder, "loom.toml").write_text('[bus]\nmode = "auto"\n[tracing]\nenabled = false\n')
        ready, results = spawn.Event(), spawn.Queue()
        receiver = spawn.Process(target=loom_receiver, args=(folder, ready, results, count))
        receiver.start()
        try:
            if not ready.wait(60):
                raise RuntimeError("the receiver did not start within 60 s")
            if sender == "node":
                node = shutil.which("node") or "node"
                args = [node, str(PUBLISHER), "--count", str(count), "--rate", str(rate)]
                subprocess.run(args, cwd=folder, check=True, capture_output=True, timeout=300)
            else:
                python = spawn.Process(target=loom_sender, args=(folder, count, rate))
                python.start()
                python.join(300)
            outcome = results.get(timeout=120)
        finally:
            receiver.join(30)
            if receiver.is_alive():
                receiver.kill()
    return outcome


def throughput(sender: str, count: int) -> dict[str, Any]:
    outcome = one_round(sender, count, 0)
    return {
        "eps": round(outcome["received"] / max(outcome["seconds"], 1e-9)),
        "received": outcome["received"],
        "sent": count,
    }


def latency(sender: str, rate: float, seconds: float) -> dict[str, Any]:
    count = int(rate * seconds)
    values = sorted(one_round(sender, count, rate)["latencies"])
    return {
        "rate_eps": rate,
        "p50_ms": round(percentile(values, 50), 3),
        "p99_ms": round(percentile(values, 99), 3),
        "received": len(values),
        "sent": count,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    if not (PUBLISHER.parent.parent / "dist" / "index.js").is_file():
        raise SystemExit("the JavaScript SDK is not built: run `make sdk-js` first")
    figures: dict[str, Any] = {}
    for sender in ("python", "node"):
        figures[sender] = {
            "throughput": throughput(sender, args.count),
            "latency": latency(sender, args.rate, args.seconds),
        }
    python, node = figures["python"], figures["node"]
    figures["node_vs_python"] = {
        "throughput": round(node["throughput"]["eps"] / python["throughput"]["eps"], 3),
        "p99": round(node["latency"]["p99_ms"] / max(python["latency"]["p99_ms"], 1e-9), 3),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    head = f"{'sender':8} {'events/s':>10} {'received':>16} {'p50 ms':>8} {'p99 ms':>8}"
    print(f"{head}  (latency at {args.rate:g} events/s)")
    for sender in ("python", "node"):
        tp, lat = figures[sender]["throughput"], figures[sender]["latency"]
        got = f"{tp['received']}/{tp['sent']}"
        print(f"{sender:8} {tp['eps']:>10,} {got:>16} {lat['p50_ms']:>8} {lat['p99_ms']:>8}")
    ratios = figures["node_vs_python"]
    print(f"node / python: throughput {ratios['throughput']}, p99 {ratios['p99']}")


if __name__ == "__main__":
    main()
