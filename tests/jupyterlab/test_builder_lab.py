"""The builder inline in a real JupyterLab: notebook 05 Run All in chromium, the canvas
drawn in the cell's output, a palette entry dragged onto it reaches the kernel, and the
page stays clean (no traceback, no console error, no request off the machine)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.support.jupyterlab import Lab, LabPage, publish, running_lab

playwright_api = pytest.importorskip("playwright.async_api")

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.timeout(180),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: `make browser`"),
]
WAIT_MS = 60_000


@pytest.fixture
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The notebook in notebooks/, beside a copy of the demo (it reads ../demo)."""
    root = tmp_path_factory.mktemp("builder-lab")
    (root / "notebooks").mkdir()
    shutil.copy(REPO / "notebooks" / "05_builder.ipynb", root / "notebooks")
    shutil.copytree(
        REPO / "demo" / "market_analyst", root / "demo" / "market_analyst",
        ignore=shutil.ignore_patterns("__pycache__"),
    )  # fmt: skip
    scratch = root / "tmp"
    scratch.mkdir()
    with running_lab(root, env={"TMPDIR": str(scratch)}) as server:
        yield server


@pytest_asyncio.fixture(loop_scope="module")
async def page(lab: Lab) -> AsyncIterator[LabPage]:
    async with playwright_api.async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        context = await chromium.new_context(viewport={"width": 1400, "height": 1000})
        try:
            opened = await LabPage.open(context, lab, "notebooks/05_builder.ipynb")
            await opened.wait_for_kernel()
            yield opened
        finally:
            await chromium.close()


# A known flake, not understood yet: now and then (2 runs in ~15, on a loaded machine, the
# first JupyterLab test after the parallel suite) the page's Panel comm handler fails every
# patch of an output with Bokeh's "TypeError: ... is not iterable" in apply_json_patch, and
# the canvas never draws. The test fails with that console error; it gets one more try, in a
# JupyterLab of its own (the fixtures are per test).
@pytest.mark.flaky(reruns=1)
async def test_the_builder_notebook_draws_the_canvas_inline(page: LabPage, tmp_path: Path) -> None:
    assert await page.run_all(), "a cell failed"
    outputs = await page.cell_outputs()
    assert "wrote agents/producer_1.py, agents/sink_1.py" in "".join(outputs)
    assert "running: producer-1, sink-1" in "".join(outputs)
    assert "terminal-view" in "".join(outputs)  # the demo read from its code
    # the canvas, in the cell's output, with the two generated agents and their wire
    await page.page.locator(".loom-board").first.scroll_into_view_if_needed()
    await page.page.wait_for_timeout(2000)
    for agent in ("producer-1", "sink-1"):
        try:
            await page.page.locator(f'[data-agent="{agent}"]').wait_for(timeout=WAIT_MS)
        except playwright_api.TimeoutError:
            raise AssertionError(
                f"the canvas has no {agent}; page errors: {page.errors}; "
                f"console errors: {page.console}"
            ) from None
    wire = page.page.locator('path.loom-edge[data-source="producer-1"][data-target="sink-1"]')
    await playwright_api.expect(wire).to_have_count(1, timeout=WAIT_MS)
    # a palette entry dragged onto the board reaches the kernel, which draws the new agent
    board = page.page.locator(".loom-board")
    await board.scroll_into_view_if_needed()
    await page.page.locator('[data-template="transform"]').drag_to(
        board, target_position={"x": 200, "y": 200}
    )
    await page.page.locator('[data-agent="transform-1"]').wait_for(timeout=WAIT_MS)
    shot = tmp_path / "builder-notebook.png"
    await page.screenshot(shot)
    publish(shot)
    tracebacks = [out for out in outputs if "Traceback" in out]
    assert tracebacks == [], tracebacks[0][-3000:]
    assert page.errors == [], page.errors
    assert page.console == [], page.console
    assert page.outside() == [], page.outside()
