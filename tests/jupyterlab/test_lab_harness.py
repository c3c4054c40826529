"""The JupyterLab test harness itself: a real ``jupyter lab`` starts, a page opens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.support.browser import CHROMIUM, launch_chromium
from tests.support.jupyterlab import LabPage, running_lab

playwright_api = pytest.importorskip("playwright.async_api")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(180),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: `make browser`"),
]


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Any]:
    async with launch_chromium() as chromium:
        yield chromium


async def test_a_real_jupyter_lab_shows_its_launcher(browser: Any, tmp_path: Path) -> None:
    with running_lab(tmp_path) as lab:
        context = await browser.new_context(viewport={"width": 1400, "height": 900})
        page = await LabPage.open(context, lab)
        await playwright_api.expect(page.page.locator(".jp-Launcher")).to_be_visible(timeout=60_000)
        await page.screenshot(tmp_path / "lab.png")
        await context.close()
    assert page.outside() == []
