"""Record the Market Analyst in the studio: ``docs/img/market-analyst.webm`` and a GIF of it.

    python -m demo.market_analyst.record [--out docs/img] [--view-seconds 6]

The demo runs as ``make demo`` runs it (offline replayed prices, the offline news corpus,
local paper trading), with the rule planner: the LLM keys are left out of its environment,
so every run shows the same market. Its studio is served on a free port and opened in
chromium (``/usr/bin/chromium``, driven by Playwright), which records the page while the
script walks through the dashboard, a trace, the topic explorer and the editor, each
introduced by a title. ffmpeg then makes the GIF the README shows.

Needs Debian's ``chromium`` (``make browser``) and ``ffmpeg`` (``apt-get install -y ffmpeg``):
Playwright records through an ffmpeg build of its own, whose download fails offline, so the
script points Playwright at the system's (a symlink in Playwright's browsers folder).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import playwright
from playwright.async_api import Page, async_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
SIZE = {"width": 1280, "height": 800}
#: the demo's studio prints this line once it serves
STUDIO_LINE = re.compile(r"Studio.*open (http://127\.0\.0\.1:\d+/)")
#: (tab, chapter title, what the chapter shows)
TOUR = [
    ("Dashboard", "The Market Analyst", "six agents: prices and news to paper trades"),
    ("Traces", "One trace per tick", "every agent a lane, every handler a span"),
    ("Topics", "The topic explorer", "who publishes and who listens, payload schemas"),
    ("Editor", "The live editor", "save an agent's code and it is swapped in"),
    ("Dashboard", "Loom", "loom studio · make demo"),
]


def playwright_ffmpeg() -> None:
    """Point Playwright's ffmpeg at the system's (its own cannot be downloaded offline)."""
    system = shutil.which("ffmpeg")
    if system is None:
        raise SystemExit("ffmpeg is missing: `apt-get install -y ffmpeg`, then run this again")
    browsers = json.loads(
        (Path(playwright.__file__).parent / "driver/package/browsers.json").read_text()
    )["browsers"]
    revision = next(b["revision"] for b in browsers if b["name"] == "ffmpeg")
    root = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH", Path.home() / ".cache/ms-playwright"))
    link = root / f"ffmpeg-{revision}" / "ffmpeg-linux"
    if not link.exists():
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(system)


async def start_demo(seconds: float) -> tuple[asyncio.subprocess.Process, str]:
    """The demo with its studio on a free port, and the studio's URL."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}  # rule planner
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "demo.market_analyst", "--no-view", "--studio-port", "0",
        "--duration", str(seconds), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(120):
        while line := await demo.stdout.readline():
            found = STUDIO_LINE.search(line.decode(errors="replace"))
            if found:
                return demo, found.group(1)
    raise SystemExit(f"the demo exited before serving its studio (status {await demo.wait()})")


async def tour(page: Page, url: str, video: Path, view_seconds: float) -> None:
    await page.goto(url)
    # recording starts once the agents table shows the running demo (no blank opening)
    await page.get_by_text("running", exact=True).first.wait_for(timeout=60_000)
    await page.wait_for_timeout(1500)
    await page.screencast.start(path=video, size=SIZE)
    for tab, title, description in TOUR:
        await page.get_by_text(tab, exact=True).first.click()
        await page.screencast.show_chapter(title, description=description, duration=1800)
        await page.wait_for_timeout(view_seconds * 1000)
    await page.screencast.stop()


async def record(out: Path, view_seconds: float) -> Path:
    playwright_ffmpeg()
    demo, url = await start_demo(seconds=60 + view_seconds * len(TOUR))
    video = out / "market-analyst.webm"
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport=SIZE)
            await tour(page, url, video, view_seconds)
            await browser.close()
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGINT)
            await asyncio.wait_for(demo.wait(), 30)
    return video


def to_gif(video: Path, gif: Path, width: int = 720, fps: int = 6) -> None:
    """A GIF of the video, with one palette for the whole of it (ffmpeg's two passes)."""
    with tempfile.TemporaryDirectory() as folder:
        palette = Path(folder) / "palette.png"
        scale = f"fps={fps},scale={width}:-1:flags=lanczos"
        run = ["ffmpeg", "-y", "-loglevel", "error", "-i", str(video)]
        subprocess.run([*run, "-vf", f"{scale},palettegen=max_colors=96", str(palette)],
                       check=True)  # fmt: skip
        subprocess.run(
            [*run, "-i", str(palette), "-lavfi", f"{scale}[x];[x][1:v]paletteuse=dither=bayer",
             str(gif)], check=True,
        )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"), help="folder to write to")
    parser.add_argument("--view-seconds", type=float, default=6, help="seconds on each view")
    options = parser.parse_args(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    video = asyncio.run(record(options.out, options.view_seconds))
    gif = video.with_suffix(".gif")
    to_gif(video, gif)
    for path in (video, gif):
        print(f"{path}: {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
