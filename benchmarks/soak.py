"""Soak: the Market Analyst for N minutes at ~1k events/s, and what its resources do.

    python benchmarks/soak.py [--minutes 10] [--rate 250] [--every 5] [--warmup 60]
                              [--bus embedded] [--out soak-out] [--tracemalloc]

The six agents of the demo (``demo/market_analyst/bench.py``'s configuration: offline
data, rule planner, wide risk limits, default tracing) run in a worker process of their
own, on a temporary project. ``--rate`` is ticks per second over five symbols; each tick
becomes a price event, a trend, a risk and (some) sentiment events, plans and orders, so
250 ticks/s is about 1,000 events/s on the bus. ``--bus embedded`` (default) runs the bus
in the worker, as ``make demo`` does; ``--bus standalone`` runs ``loom bus`` beside it (it
then stores the spans) and samples it too.

Every ``--every`` seconds: RSS, open files and threads of each process (psutil), the
worker's asyncio tasks, the bytes of every file in ``.loom/``, the span count and the
events through the broker. Written to ``<out>/soak.csv``; ``<out>/soak.png`` too when
matplotlib is installed. At the end, ``<out>/summary.json``: the growth of each from the
end of the warm-up (``--warmup`` seconds, 60 by default) to the end, and the largest
disk use seen.
``--tracemalloc`` makes the worker write the 25 allocation sites that grew most between
the end of the warm-up and the end (``<out>/growth.txt``).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
SYMBOLS = ["AAPL", "GOOG", "IBM", "MSFT", "BTC-USDT"]


# -- the worker: the demo's agents ------------------------------------------------------


async def work(options: argparse.Namespace) -> None:
    project, minutes, rate = Path(options.worker), options.minutes, options.rate
    trace_memory, warmup = options.tracemalloc, options.warmup
    sys.path.insert(0, str(REPO))
    from demo.market_analyst.app import agents
    from demo.market_analyst.bench import bench_config
    from loom_kernel import open_runtime
    from loom_kernel.config import parse_config

    config = parse_config(bench_config(project, rate, SYMBOLS), path=project / "loom.toml")
    status = project / "worker.json"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with open_runtime(config) as rt:
        await rt.start(*agents())
        started = loop.time()
        baseline = None
        while not stop.is_set() and loop.time() - started < minutes * 60:
            await asyncio.sleep(1.0)
            if trace_memory and baseline is None and loop.time() - started > warmup:
                baseline = tracemalloc.take_snapshot()
            stats = rt.client.statistics()
            report = {
                "tasks": len(asyncio.all_tasks()),
                "published": stats.published,
                "received": stats.received,
                "lost": stats.lost,
                "traced_mb": tracemalloc.get_traced_memory()[0] / 2**20 if trace_memory else None,
            }
            status.with_suffix(".tmp").write_text(json.dumps(report))
            status.with_suffix(".tmp").replace(status)
        if baseline is not None:
            _write_growth(baseline, tracemalloc.take_snapshot(), project / "growth.txt")


def _write_growth(before: Any, after: Any, path: Path) -> None:
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    diff = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
    path.write_text("\n".join(str(stat) for stat in diff[:25]) + "\n")


# -- the harness: start, sample, plot ---------------------------------------------------


def start_worker(project: Path, options: argparse.Namespace) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if options.tracemalloc:
        env["PYTHONTRACEMALLOC"] = "1"
    command = [sys.executable, __file__, "--worker", str(project)]
    command += ["--minutes", str(options.minutes), "--rate", str(options.rate)]
    command += ["--warmup", str(options.warmup)]
    command += ["--tracemalloc"] if options.tracemalloc else []
    log = (project / "worker.log").open("wb")
    return subprocess.Popen(command, cwd=project, env=env, stdout=log, stderr=log)


def start_bus(project: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = (project / "bus.log").open("wb")
    command = [sys.executable, "-m", "loom_kernel.cli.app", "bus", "--url", "tcp://127.0.0.1:0",
               "--quiet"]  # fmt: skip
    return subprocess.Popen(command, cwd=project, env=env, stdout=log, stderr=log)


def folder_bytes(folder: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for path in folder.rglob("*"):
        if path.is_file():
            sizes[path.name] = sizes.get(path.name, 0) + path.stat().st_size
    return sizes


def span_count(project: Path) -> int | None:
    from loom_kernel import SpanStore

    path = project / ".loom" / "traces.db"
    if not path.exists():
        return None
    try:
        return SpanStore(path).count()
    except Exception:  # the file is being created
        return None


def sample(processes: dict[str, psutil.Process], project: Path, t: float) -> dict[str, Any]:
    row: dict[str, Any] = {"t_s": round(t, 1)}
    for name, proc in processes.items():
        try:
            row[f"{name}_rss_mb"] = round(proc.memory_info().rss / 2**20, 1)
            row[f"{name}_open_files"] = proc.num_fds()
            row[f"{name}_threads"] = proc.num_threads()
        except psutil.Error:
            row[f"{name}_rss_mb"] = row[f"{name}_open_files"] = row[f"{name}_threads"] = None
    try:
        status = json.loads((project / "worker.json").read_text())
    except (OSError, ValueError):
        status = {}
    row["worker_tasks"] = status.get("tasks")
    row["published"] = status.get("published")
    row["received"] = status.get("received")
    row["lost"] = status.get("lost")
    row["traced_mb"] = status.get("traced_mb")
    sizes = folder_bytes(project / ".loom")
    row["loom_dir_mb"] = round(sum(sizes.values()) / 2**20, 2)
    for name in ("traces.db", "traces.db-wal", "events.db", "events.db-wal"):
        row[f"{name}_mb"] = round(sizes.get(name, 0) / 2**20, 2)
    row["spans"] = span_count(project)
    return row


def plot(rows: list[dict[str, Any]], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    t = [r["t_s"] / 60 for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for key in [k for k in rows[0] if k.endswith("_rss_mb")]:
        axes[0][0].plot(t, [r[key] for r in rows], label=key)
    axes[0][0].set_title("RSS (MB)")
    axes[0][1].plot(t, [r["loom_dir_mb"] for r in rows], label=".loom/")
    axes[0][1].plot(t, [r["traces.db_mb"] for r in rows], label="traces.db")
    axes[0][1].plot(t, [r["traces.db-wal_mb"] for r in rows], label="traces.db-wal")
    axes[0][1].set_title("disk (MB)")
    for key in [k for k in rows[0] if k.endswith("_open_files")] + ["worker_tasks"]:
        axes[1][0].plot(t, [r[key] for r in rows], label=key)
    axes[1][0].set_title("open files, asyncio tasks")
    axes[1][1].plot(t, [r["spans"] or 0 for r in rows], label="spans stored")
    axes[1][1].set_title("span store")
    for ax in (a for row in axes for a in row):
        ax.set_xlabel("minutes")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def soak(options: argparse.Namespace) -> Path:
    out = Path(options.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    project = Path(tempfile.mkdtemp(prefix="loom-soak-"))
    processes: dict[str, subprocess.Popen[bytes]] = {}
    if options.bus == "standalone":
        processes["bus"] = start_bus(project)
        deadline = time.monotonic() + 30
        while not (project / ".loom" / "bus.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    processes["worker"] = start_worker(project, options)
    watched = {name: psutil.Process(proc.pid) for name, proc in processes.items()}
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    with (out / "soak.csv").open("w", newline="") as handle:
        writer: csv.DictWriter[str] | None = None
        while processes["worker"].poll() is None:
            time.sleep(options.every)
            row = sample(watched, project, time.monotonic() - started)
            if processes["worker"].poll() is not None:
                break  # it ended while sampled: the row would say 0 MB
            rows.append(row)
            if writer is None:
                writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
                writer.writeheader()
            writer.writerow(rows[-1])
            handle.flush()
            print(json.dumps(rows[-1]), flush=True)
    for proc in processes.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    for name in ("growth.txt", "worker.log", "bus.log"):
        if (project / name).exists():
            (out / name).write_text((project / name).read_text())
    if rows and plot(rows, out / "soak.png"):
        print(f"plot: {out / 'soak.png'}")
    if rows:
        result = summary(rows, options.warmup)
        (out / "summary.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
    return out


def summary(rows: list[dict[str, Any]], warmup: float) -> dict[str, Any]:
    """Growth from the end of the warm-up (the first sample past ``warmup`` s) to the end."""
    warm = next((r for r in rows if r["t_s"] >= warmup), rows[0])
    last = rows[-1]
    result: dict[str, Any] = {"warmup_s": warm["t_s"], "end_s": last["t_s"]}
    for key in [k for k in last if k.endswith(("_rss_mb", "_open_files", "_threads"))]:
        if warm[key] is not None and last[key] is not None:
            result[key] = [warm[key], last[key]]
    for name in [k[: -len("_rss_mb")] for k in last if k.endswith("_rss_mb")]:
        before, after = warm[f"{name}_rss_mb"], last[f"{name}_rss_mb"]
        if before and after:
            result[f"{name}_rss_growth_pct"] = round((after - before) / before * 100, 1)
    result["worker_tasks"] = [warm["worker_tasks"], last["worker_tasks"]]
    result["loom_dir_mb"] = [warm["loom_dir_mb"], last["loom_dir_mb"]]
    result["loom_dir_max_mb"] = max(r["loom_dir_mb"] for r in rows)
    result["traces_wal_max_mb"] = max(r["traces.db-wal_mb"] for r in rows)
    result["spans_max"] = max(r["spans"] or 0 for r in rows)
    result["events_published"] = last["published"]
    result["events_lost"] = last["lost"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=250.0, help="ticks per second")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before growth counts")
    parser.add_argument("--bus", choices=["embedded", "standalone"], default="embedded")
    parser.add_argument("--out", default="soak-out")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if min(options.minutes, options.rate, options.every) <= 0 or options.warmup < 0:
        parser.error("--minutes, --rate and --every must be > 0, --warmup >= 0")
    if options.worker:
        asyncio.run(work(options))
        return
    print(f"results in {soak(options)}")


if __name__ == "__main__":
    main()
