"""A reliable subscriber, or the bus's host, killed with ``kill -9`` while a publisher
sends: events lost, events handled twice.

    python benchmarks/reliable_kill.py [--rate 20000] [--count 100000] [--kill subscriber|host]
                                       [--json]

Processes on a project with ``[eventlog] enabled`` and ``reliable = ["load.*"]``: a
durable subscriber (``tests/kernel/_procs/durable_sink.py``, a ``qos="reliable"`` agent
that writes every event it handles to a file) and a publisher (``load_publisher.py``)
sending ``--count`` events paced at ``--rate`` per second.

- ``--kill subscriber`` (default): this process runs the bus and the event log (an
  embedded runtime). When a quarter has been handled the subscriber gets ``SIGKILL``, and
  is started again at once.
- ``--kill host``: a third process (``child_agents.py``) hosts the bus and the event log;
  this one only reads files. When a quarter has been handled the host gets ``SIGKILL``:
  the subscriber or the publisher takes the bus and the log over (``[bus] mode = "auto"``).

At the end: the publisher's achieved rate, the events never handled (lost), the events
handled twice, the events the publisher sent the log again, and the time from the
publisher's last event to the last one handled (catching up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loom_kernel import open_runtime

PROCS = Path(__file__).resolve().parent.parent / "tests" / "kernel" / "_procs"
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}


async def _spawn(folder: Path, script: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, str(PROCS / f"{script}.py"), *args, cwd=folder, env=ENV,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip


def _handled(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(s, int(q)) for s, q, _ in (line.split() for line in path.read_text().splitlines())]


def _lines(*paths: Path) -> int:
    """How many events the files hold, counted cheaply (this process runs the bus)."""
    return sum(path.read_bytes().count(b"\n") for path in paths if path.exists())


async def _until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(0.1)


async def _sink(rt: Any, folder: Path, output: Path) -> asyncio.subprocess.Process:
    sink = await _spawn(folder, "durable_sink", str(output))
    assert sink.stdout is not None
    await asyncio.wait_for(sink.stdout.readline(), 60)
    cursors = lambda: {c["name"] for c in rt.event_log.cursors()}  # noqa: E731
    await _until(lambda: "sink:load.*" in cursors(), 10, "the sink's cursor")
    return sink


async def measure(count: int, rate: float, folder: Path) -> dict[str, Any]:
    (folder / "loom.toml").write_text(
        '[tracing]\nenabled = false\n[eventlog]\nenabled = true\nreliable = ["load.*"]\n'
    )
    first, second = folder / "first.txt", folder / "second.txt"
    async with open_runtime(folder / "loom.toml") as rt:
        procs = [await _sink(rt, folder, first)]
        try:
            procs.append(await _spawn(folder, "load_publisher", "load.x", str(count), str(rate)))
            await _until(lambda: _lines(first) >= count // 4, 120, "a quarter handled")
            os.kill(procs[0].pid, signal.SIGKILL)
            await procs[0].wait()
            killed_at = len(_handled(first))
            procs.append(await _sink(rt, folder, second))
            sent = (await asyncio.wait_for(procs[1].stdout.readline(), 600)).decode().split()
            if not sent:
                raise SystemExit(f"the publisher ended early (code {await procs[1].wait()})")
            done_at = time.monotonic()
            everything = lambda: (  # noqa: E731
                _lines(first, second) >= count
                and len({*_handled(first), *_handled(second)}) >= count
            )
            await _until(everything, 300, "every event handled")
            catch_up = time.monotonic() - done_at
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
    before, after = _handled(first), _handled(second)
    seen = {seq for _, seq in before + after}
    return {
        "kill": "subscriber",
        "count": count,
        "offered_rate": rate,
        "achieved_rate": round(int(sent[1]) / float(sent[3])),
        "killed_after": killed_at,
        "lost": count - len(seen & set(range(1, count + 1))),
        "doubled": len(set(before) & set(after)),
        "catch_up_s": round(catch_up, 2),
    }


def _host_pid(folder: Path) -> int | None:
    try:
        return json.loads((folder / ".loom" / "bus.json").read_text())["pid"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


async def measure_host_kill(count: int, rate: float, folder: Path) -> dict[str, Any]:
    (folder / "loom.toml").write_text(
        "[runtime]\nheartbeat_interval = 0.2\n[tracing]\nenabled = false\n"
        '[eventlog]\nenabled = true\nreliable = ["load.*"]\n'
    )
    output = folder / "handled.txt"
    host = await _spawn(folder, "child_agents", "echo")
    procs = [host]
    try:
        await _until(lambda: _host_pid(folder) == host.pid, 60, "the first host")
        sink = await _spawn(folder, "durable_sink", str(output))
        procs.append(sink)
        await asyncio.wait_for(sink.stdout.readline(), 60)  # type: ignore[union-attr]
        procs.append(await _spawn(folder, "load_publisher", "load.x", str(count), str(rate)))
        await _until(lambda: _lines(output) >= count // 4, 120, "a quarter handled")
        os.kill(host.pid, signal.SIGKILL)
        killed, killed_at = time.monotonic(), _lines(output)
        await host.wait()
        survivors = {p.pid for p in procs[1:]}
        await _until(lambda: _host_pid(folder) in survivors, 60, "a survivor hosting")
        took_over = time.monotonic() - killed
        sent = (await asyncio.wait_for(procs[2].stdout.readline(), 600)).decode().split()
        if not sent:
            raise SystemExit(f"the publisher ended early (code {await procs[2].wait()})")
        done_at = time.monotonic()
        await _until(lambda: len(set(_handled(output))) >= count, 300, "every event handled")
        catch_up = time.monotonic() - done_at
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    events = _handled(output)
    seen = {seq for _, seq in events}
    return {
        "kill": "host",
        "count": count,
        "offered_rate": rate,
        "achieved_rate": round(int(sent[1]) / float(sent[3])),
        "killed_after": killed_at,
        "takeover_s": round(took_over, 2),
        "lost": count - len(seen & set(range(1, count + 1))),
        "doubled": len(events) - len(set(events)),
        "resent": int(sent[5]),
        "catch_up_s": round(catch_up, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rate", type=float, default=20_000)
    parser.add_argument("--kill", choices=["subscriber", "host"], default="subscriber")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    how = measure_host_kill if args.kill == "host" else measure
    with tempfile.TemporaryDirectory(prefix="loom-reliable-kill-") as folder:
        result = asyncio.run(how(args.count, args.rate, Path(folder)))
    if args.json:
        print(json.dumps(result))
        return
    what = "subscriber killed" if args.kill == "subscriber" else "bus host killed"
    extra = (
        f", a survivor hosted the bus {result['takeover_s']} s after the kill, "
        f"{result['resent']:,} events sent to the log again"
        if args.kill == "host"
        else ""
    )
    print(
        f"{result['count']:,} events offered at {result['offered_rate']:,.0f}/s, sent at "
        f"{result['achieved_rate']:,}/s; {what} after {result['killed_after']:,}: "
        f"{result['lost']} lost, {result['doubled']} handled twice, caught up "
        f"{result['catch_up_s']} s after the last send{extra}"
    )


if __name__ == "__main__":
    main()
