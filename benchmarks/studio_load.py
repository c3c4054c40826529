"""The studio under load: the dashboard open in chromium while an agent publishes
thousands of events a second.

    python benchmarks/studio_load.py [--duration 300] [--rate 2000] [--sample 10] [--json]

Four processes on loopback, as ``make demo`` and ``loom studio`` run them: the agents'
process (the embedded bus, the span store and one emitter agent publishing
``load.tick.<n % 100>`` at ``--rate`` events/s), the studio (``loom studio``), chromium
(/usr/bin/chromium) with the studio's dashboard open, and this script, which joins the
bus for the heartbeats only. After a warm-up, every ``--sample`` seconds it records:

- the bus rate (the emitter's heartbeat ``emitted``) and what the studio's observer took
  (its heartbeat ``handled``), with the observer's drops and gaps (``dropped``, ``lost``);
- the browser's update rate: Bokeh ``PATCH-DOC`` messages received on the page's
  websocket, and their bytes (Playwright's view of the frames);
- chromium's JS heap after a forced garbage collection, and the share of time the
  page's main thread was busy (CDP ``Performance.getMetrics``: ``JSHeapUsedSize``,
  ``TaskDuration``); the round trip of a trivial ``page.evaluate``;
- the studio process's resident memory (``VmRSS``).

See docs/studio.md for figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loom_kernel import Agent, on_event, open_runtime

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
TOPICS = 100  # distinct topics the emitter cycles through
PROJECT_TOML = "[runtime]\nheartbeat_interval = 1.0\n"
WARMUP_S = 8.0

# The number a header indicator shows (a Panel HTML model: its label, then its value).
NUMBER_JS = r"""(label) => {
  const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
  if (!doc) return null;
  const text = (html) => new DOMParser().parseFromString(html, "text/html").body.textContent;
  for (const m of doc.all_models) {
    if (m.type !== "panel.models.markup.HTML" || !m.text) continue;
    const parts = text(text(m.text)).split("\n").map((s) => s.trim()).filter(Boolean);
    if (parts.length === 2 && parts[0] === label) return Number(parts[1].replace(/,/g, ""));
  }
  return null;
}"""


# -- the agents' process -----------------------------------------------------------------


class Emitter(Agent):
    """Publishes ``rate`` events a second, paced every 10 ms, yielding every 200."""

    id = "load-emitter"

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    async def run(self, ctx: Any) -> None:
        loop = asyncio.get_running_loop()
        started, sent = loop.time(), 0
        while True:
            due = int((loop.time() - started) * self.rate)
            while sent < due:
                await ctx.emit(f"load.tick.{sent % TOPICS}", {"n": sent, "value": sent * 0.5})
                sent += 1
                if sent % 200 == 0:
                    await asyncio.sleep(0)
            await asyncio.sleep(0.01)


async def run_agents(config: Path, rate: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_runtime(config) as rt:
        await rt.start(Emitter(rate))
        await stop.wait()


# -- the measuring process -----------------------------------------------------------------


class Heartbeats(Agent):
    """Keeps every agent's last heartbeat (the emitter's and the studio observer's)."""

    id = "load-probe"

    def __init__(self) -> None:
        super().__init__()
        self.last: dict[str, dict[str, Any]] = {}

    @on_event("loom.agent.*", qos="realtime")
    async def beat(self, event: Any, ctx: Any) -> None:
        if event.topic.endswith(".heartbeat") and isinstance(event.data, dict):
            self.last[event.data.get("agent_id", "")] = event.data

    def studio(self) -> dict[str, Any]:
        beats = [b for a, b in self.last.items() if a.startswith("studio-")]
        return beats[0] if beats else {}

    def emitter(self) -> dict[str, Any]:
        return self.last.get(Emitter.id, {})


@dataclass
class Sample:
    t: float  # seconds since the measurement started
    bus_eps: float  # events/s the emitter published
    studio_eps: float  # events/s the studio's observer handled
    studio_dropped: int  # the observer's drops + gaps so far (from the start)
    page_eps: float | None  # what the page's "events/s" shows
    patches_per_s: float  # Bokeh PATCH-DOC messages the page received
    kb_per_s: float  # websocket bytes the page received
    heap_mb: float  # chromium's JS heap after a GC
    busy_pct: float  # share of the time the page's main thread ran tasks
    rtt_ms: float  # a trivial page.evaluate round trip
    studio_rss_mb: float


class Socket:
    """Counts what the page's websocket receives."""

    def __init__(self) -> None:
        self.patches = 0
        self.bytes = 0

    def attach(self, websocket: Any) -> None:
        websocket.on("framereceived", self.frame)

    def frame(self, payload: str | bytes) -> None:
        self.bytes += len(payload)
        if isinstance(payload, str) and payload.startswith("{") and len(payload) < 300:
            with contextlib.suppress(ValueError):
                if json.loads(payload).get("msgtype") == "PATCH-DOC":
                    self.patches += 1


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(0.1)


async def wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the studio did not listen within {timeout:g} s") from None
            await asyncio.sleep(0.2)
        else:
            writer.close()
            return


async def metrics(cdp: Any) -> dict[str, float]:
    await cdp.send("HeapProfiler.collectGarbage")
    reply = await cdp.send("Performance.getMetrics")
    return {m["name"]: m["value"] for m in reply["metrics"]}


async def measure(duration: float, rate: float, every: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    with tempfile.TemporaryDirectory(prefix="loom-studio-load-") as folder:
        config = Path(folder) / "loom.toml"
        config.write_text(PROJECT_TOML)
        port = free_port()
        children = []
        try:
            children.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, __file__, "--role", "agents", "--config", str(config),
                    "--rate", str(rate), cwd=REPO, env=env,
                )
            )  # fmt: skip
            await wait_for((Path(folder) / ".loom" / "bus.json").exists, 30, "the bus")
            studio = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "loom_kernel.cli.app", "studio", "--port", str(port),
                "--config", str(config), cwd=REPO, env=env, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            children.append(studio)
            async with open_runtime(config) as rt:
                probe = Heartbeats()
                await rt.start(probe)
                await wait_for_port(port, 60)
                async with async_playwright() as playwright:
                    browser = await playwright.chromium.launch(
                        executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
                    )
                    try:
                        result = await _watch(browser, port, probe, studio.pid, duration, every)
                    finally:
                        await browser.close()
            return {"rate_target": rate, **result}
        finally:
            for child in reversed(children):
                await stop(child)


async def stop(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        child.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(child.wait(), 10)
        except TimeoutError:
            child.kill()
            await child.wait()


async def _watch(
    browser: Any, port: int, probe: Heartbeats, studio_pid: int, duration: float, every: float
) -> dict[str, Any]:
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    counter = Socket()
    page.on("websocket", counter.attach)
    await page.goto(f"http://127.0.0.1:{port}/")
    await page.wait_for_function(
        f"() => ({NUMBER_JS})('events/s') > 0 && ({NUMBER_JS})('agents running') >= 1",
        timeout=60_000,
    )
    await asyncio.sleep(WARMUP_S)  # the rate settles, the plots fill their first seconds
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Performance.enable")
    first = last = await _point(page, cdp, counter, probe, studio_pid)
    samples: list[Sample] = []
    while last["clock"] - first["clock"] < duration - 1e-3:
        await asyncio.sleep(min(every, duration - (last["clock"] - first["clock"])))
        now = await _point(page, cdp, counter, probe, studio_pid)
        samples.append(_sample(first, last, now))
        last = now
        print(_row(samples[-1]), flush=True)
    whole = _sample(first, first, last)
    return {
        "duration_s": round(last["clock"] - first["clock"], 1),
        "start": {"heap_mb": first["heap_mb"], "studio_rss_mb": first["rss_mb"]},
        "end": {"heap_mb": last["heap_mb"], "studio_rss_mb": last["rss_mb"]},
        "whole": asdict(whole),
        "samples": [asdict(s) for s in samples],
        "rtt_ms_max": max(s.rtt_ms for s in samples),
        "heap_mb_max": max(s.heap_mb for s in samples),
        "studio_rss_mb_max": max(s.studio_rss_mb for s in samples),
        "page_eps_median": statistics.median(
            [s.page_eps for s in samples if s.page_eps is not None] or [0]
        ),
    }


async def _point(
    page: Any, cdp: Any, counter: Socket, probe: Heartbeats, pid: int
) -> dict[str, Any]:
    started = time.monotonic()
    await page.evaluate("0")
    rtt = (time.monotonic() - started) * 1000
    values = await metrics(cdp)
    studio, emitter = probe.studio(), probe.emitter()
    return {
        "clock": time.monotonic(),
        "rtt_ms": rtt,
        "patches": counter.patches,
        "bytes": counter.bytes,
        "heap_mb": values["JSHeapUsedSize"] / 2**20,
        "task_s": values["TaskDuration"],
        "emitted": emitter.get("emitted", 0),
        "handled": studio.get("handled", 0),
        "dropped": studio.get("dropped", 0) + studio.get("lost", 0),
        "page_eps": await page.evaluate(NUMBER_JS, "events/s"),
        "rss_mb": rss_mb(pid),
    }


def _sample(first: dict[str, Any], before: dict[str, Any], now: dict[str, Any]) -> Sample:
    span = max(now["clock"] - before["clock"], 1e-9)
    return Sample(
        t=round(now["clock"] - first["clock"], 1),
        bus_eps=round((now["emitted"] - before["emitted"]) / span),
        studio_eps=round((now["handled"] - before["handled"]) / span),
        studio_dropped=now["dropped"] - first["dropped"],
        page_eps=now["page_eps"],
        patches_per_s=round((now["patches"] - before["patches"]) / span, 1),
        kb_per_s=round((now["bytes"] - before["bytes"]) / span / 1024, 1),
        heap_mb=round(now["heap_mb"], 1),
        busy_pct=round(100 * (now["task_s"] - before["task_s"]) / span, 1),
        rtt_ms=round(now["rtt_ms"], 1),
        studio_rss_mb=round(now["rss_mb"], 1),
    )


COLUMNS = (
    ("t", "t s", "{:>6.0f}"),
    ("bus_eps", "bus ev/s", "{:>9,.0f}"),
    ("studio_eps", "studio ev/s", "{:>12,.0f}"),
    ("studio_dropped", "studio drops", "{:>13,}"),
    ("page_eps", "page shows", "{:>11,.0f}"),
    ("patches_per_s", "page msgs/s", "{:>12.1f}"),
    ("kb_per_s", "page KB/s", "{:>10.1f}"),
    ("heap_mb", "JS heap MB", "{:>11.1f}"),
    ("busy_pct", "page busy %", "{:>12.1f}"),
    ("rtt_ms", "rtt ms", "{:>7.1f}"),
    ("studio_rss_mb", "studio RSS MB", "{:>14.1f}"),
)


def _header() -> str:
    widths = [len(fmt.format(0)) for _, _, fmt in COLUMNS]
    return " ".join(f"{title:>{w}}" for (_, title, _), w in zip(COLUMNS, widths, strict=True))


def _row(sample: Sample) -> str:
    values = asdict(sample)
    return " ".join(fmt.format(values[key] or 0) for key, _, fmt in COLUMNS)


def _summary(result: dict[str, Any], rate: float) -> str:
    whole = result["whole"]
    lines = [
        "",
        f"whole run: {result['duration_s']:.0f} s at a target of {rate:,.0f} events/s",
        f"  bus rate            {whole['bus_eps']:>10,.0f} events/s",
        f"  studio took         {whole['studio_eps']:>10,.0f} events/s, "
        f"{whole['studio_dropped']:,} dropped or lost",
        f"  page shows          {result['page_eps_median']:>10,.0f} events/s (median of samples)",
        f"  page updates        {whole['patches_per_s']:>10.1f} PATCH-DOC messages/s, "
        f"{whole['kb_per_s']:.1f} KB/s",
        f"  page busy           {whole['busy_pct']:>10.1f} % of the time; evaluate round trip "
        f"max {result['rtt_ms_max']:.1f} ms",
        f"  JS heap (after GC)  {result['start']['heap_mb']:>10.1f} MB at start, "
        f"{result['end']['heap_mb']:.1f} MB at the end, max {result['heap_mb_max']:.1f} MB",
        f"  studio RSS          {result['start']['studio_rss_mb']:>10.1f} MB at start, "
        f"{result['end']['studio_rss_mb']:.1f} MB at the end, "
        f"max {result['studio_rss_mb_max']:.1f} MB",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds measured")
    parser.add_argument("--rate", type=float, default=2000.0, help="events/s published")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--json", action="store_true", help="print one JSON object at the end")
    parser.add_argument("--role", default="measure", help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    if options.role == "agents":
        asyncio.run(run_agents(options.config, options.rate))
        return
    if not Path(CHROMIUM).exists():
        sys.exit(f"{CHROMIUM} is missing: `make browser` installs it")
    print(
        f"the studio's dashboard in chromium; {options.rate:,.0f} events/s for "
        f"{options.duration:g} s after a {WARMUP_S:g} s warm-up\n{_header()}",
        flush=True,
    )
    result = asyncio.run(measure(options.duration, options.rate, options.sample))
    print(json.dumps(result) if options.json else _summary(result, options.rate))


if __name__ == "__main__":
    main()
