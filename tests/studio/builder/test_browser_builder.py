"""The builder in chromium: drag two agents from the palette, wire them, Generate, Run,
and watch their events light the wire; open the demo and see its graph."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import panel as pn
import pytest
import pytest_asyncio

from loom_kernel import open_runtime
from loom_studio.app import serve
from loom_studio.builder.view import Builder
from loom_studio.feed import StudioFeed
from tests.conftest import REPO

playwright_api = pytest.importorskip("playwright.async_api")

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="no /usr/bin/chromium: apt-get install chromium"
    ),
]
WAIT_MS = 30_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest_asyncio.fixture
async def page() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        context = await browser.new_context(viewport={"width": 1400, "height": 900})
        page = await context.new_page()
        page.loom_urls = []  # type: ignore[attr-defined]
        page.loom_errors = []  # type: ignore[attr-defined]
        page.on("request", lambda request: page.loom_urls.append(request.url))
        page.on("pageerror", lambda error: page.loom_errors.append(str(error)))
        try:
            yield page
        finally:
            await browser.close()


async def serve_builder(make: Any) -> tuple[Any, str]:
    port = free_port()
    server = pn.serve(
        {"/": make}, port=port, address="127.0.0.1", show=False, start=False, threaded=False,
        websocket_origin=[f"127.0.0.1:{port}"],
    )  # fmt: skip
    server.start()
    return server, f"http://127.0.0.1:{port}/"


async def box_of(locator: Any) -> dict[str, float]:
    """The element's box; the canvas redraws while live (each refresh): ask again when the
    element was replaced between finding it and measuring it."""
    for _ in range(50):
        found = await locator.bounding_box()
        if found is not None:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"{locator} has no box")


def shot(path: Path) -> None:
    target = os.environ.get("LOOM_SCREENSHOTS")
    if target:
        shutil.copy(path, Path(target) / path.name)


async def test_drag_wire_generate_run_and_see_the_events(page: Any, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "loom.toml").write_text("[runtime]\nheartbeat_interval = 0.2\n")
    async with open_runtime(project / "loom.toml") as rt:
        feed = StudioFeed(rate_window=3)  # rates over 3 s: the wire lights up sooner
        await feed.attach(rt)
        server = serve(rt.config, port=0, feed=feed)  # the whole studio: its Builder tab
        try:
            await page.goto(f"http://127.0.0.1:{server.port}/")
            await page.get_by_text("Builder", exact=True).first.click()
            board = page.locator(".loom-board")
            await board.wait_for(timeout=WAIT_MS)
            templates = page.locator(".loom-template")
            await playwright_api.expect(templates).to_have_count(8, timeout=WAIT_MS)
            box = await board.bounding_box()
            await page.locator('[data-template="producer"]').drag_to(
                board, target_position={"x": 120, "y": 60}
            )
            producer = page.locator('[data-agent="producer-1"]')
            await producer.wait_for(timeout=WAIT_MS)
            await page.locator('[data-template="sink"]').drag_to(
                board, target_position={"x": 520, "y": 60}
            )
            sink = page.locator('[data-agent="sink-1"]')
            await sink.wait_for(timeout=WAIT_MS)
            # wire: from the producer's port to the sink
            port = await box_of(producer.locator(".loom-port"))
            target = await box_of(sink.locator("rect"))
            await page.mouse.move(port["x"] + port["width"] / 2, port["y"] + port["height"] / 2)
            await page.mouse.down()
            await page.mouse.move(target["x"] + 40, target["y"] + 20, steps=8)
            await page.mouse.up()
            label = page.locator('.loom-edge-label[data-source="producer-1"]')
            wire = page.locator('path.loom-edge[data-source="producer-1"][data-target="sink-1"]')
            await playwright_api.expect(label).to_have_text("producer_1.out", timeout=WAIT_MS)
            await playwright_api.expect(wire).to_have_count(1, timeout=WAIT_MS)
            await page.get_by_role("button", name="Generate").click()
            note = page.locator(".loom-note")
            await playwright_api.expect(note).to_contain_text(
                "wrote agents/producer_1.py, agents/sink_1.py", timeout=WAIT_MS
            )
            assert (project / "agents" / "sink_1.py").exists()
            await page.get_by_role("button", name="Run").click()
            await playwright_api.expect(note).to_contain_text(
                "running: producer-1, sink-1", timeout=WAIT_MS
            )
            # the wire lights up with the events the sink receives
            await playwright_api.expect(label).to_have_text(
                playwright_api_re(r"producer_1\.out\s+\d+\.\d/s"), timeout=WAIT_MS
            )
            assert box is not None
            await page.screenshot(path=tmp_path / "builder.png")
            shot(tmp_path / "builder.png")
            # and the dashboard shows their events
            await page.get_by_text("Dashboard", exact=True).first.click()
            events = page.get_by_text("producer_1.out", exact=True)
            await playwright_api.expect(events.first).to_be_visible(timeout=WAIT_MS)
            assert not [
                u
                for u in page.loom_urls
                if not u.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))
            ]
        finally:
            server.stop()
            await feed.aclose()


def playwright_api_re(pattern: str) -> Any:
    import re

    return re.compile(pattern)


async def test_the_demo_opens_as_its_graph(page: Any, tmp_path: Path) -> None:
    demo = REPO / "demo" / "market_analyst"
    (tmp_path / "loom.toml").write_text("")
    async with open_runtime(tmp_path / "loom.toml") as rt:
        feed = StudioFeed()
        await feed.attach(rt)
        server, url = await serve_builder(lambda: Builder(demo, runtime=rt, feed=feed))
        try:
            await page.goto(url)
            for agent in ("data", "trend", "risk", "sentiment", "planner", "executor"):
                await page.locator(f'[data-agent="{agent}"]').wait_for(timeout=WAIT_MS)
            edges = page.locator(".loom-edge-label")
            await playwright_api.expect(edges.first).to_be_visible(timeout=WAIT_MS)
            trend_to_planner = page.locator(
                'path.loom-edge[data-source="trend"][data-target="planner"]'
            )
            await playwright_api.expect(trend_to_planner).to_have_count(1, timeout=WAIT_MS)
            # an observer is drawn, faded, out of the flow: no wire goes to it
            view = page.locator('path.loom-edge[data-target="terminal-view"]')
            await playwright_api.expect(view).to_have_count(0)
            await page.locator('[data-agent="planner"] rect').click()
            # its form: where it is in the code, what it handles, what cannot be read
            form = page.get_by_text("planner.py", exact=True)
            await playwright_api.expect(form).to_be_visible(timeout=WAIT_MS)
            await page.screenshot(path=tmp_path / "builder-demo.png")
            shot(tmp_path / "builder-demo.png")
        finally:
            server.stop()
            await feed.aclose()
