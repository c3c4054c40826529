"""`loom studio --tenant`: one tenant's view of a shared CURVE bus, in a real browser.

Two tenants (``acme``, ``globex``) run an agent each, in processes of their own identities
(``acme-1``, ``globex-1``), on a bus hosted by the operator's runtime (``loom``); both
publish in their namespaces. The studio shows acme's view: acme's agent and events only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from loom_kernel import Agent, Envelope, on_event
from loom_studio.app import serve
from loom_studio.feed import StudioFeed
from loom_studio.tenant import TenantView
from tests.studio.test_browser import HELPERS, VIEWPORT, WAIT_MS, Studio
from tests.support.browser import CHROMIUM, launch_chromium
from tests.support.secured import two_tenants

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: `make browser`"),
]


class Desk(Agent):
    """Handles its tenant's orders (it is there to have heartbeats)."""

    @on_event("*.orders.*")
    async def order(self, event: Envelope, ctx: Any) -> None:
        return None


async def _publish(rt: Any, topic: str) -> None:
    while True:
        await rt.emit(topic, {"qty": 1})
        await asyncio.sleep(0.1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def tenant_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    project = tmp_path_factory.mktemp("tenants")
    async with two_tenants(project) as (host, acme, globex):
        await acme.start(Desk("acme-desk"))
        await globex.start(Desk("globex-desk"))
        tasks = [
            asyncio.create_task(_publish(acme, "acme.orders.new")),
            asyncio.create_task(_publish(globex, "globex.orders.new")),
        ]
        feed = StudioFeed(tenant=TenantView.of(host.config, "acme"))
        await feed.attach(host)
        server = serve(host.config, port=0, feed=feed)
        try:
            yield f"http://127.0.0.1:{server.port}/"
        finally:
            server.stop()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await feed.aclose()


@pytest_asyncio.fixture(loop_scope="module")
async def studio(tenant_url: str) -> AsyncIterator[Studio]:
    async with launch_chromium() as browser:
        context = await browser.new_context(viewport=VIEWPORT)
        await context.add_init_script(HELPERS)
        page = await context.new_page()
        session = Studio(page)
        page.on("pageerror", lambda error: session.errors.append(str(error)))
        await page.goto(tenant_url)
        await session.wait("() => window.Bokeh && loomTest.rendered()")
        yield session
        await context.close()


async def test_the_studio_shows_one_tenants_agents_and_events(
    studio: Studio, tmp_path: Path
) -> None:
    await studio.wait(
        """() => {
             const d = loomTest.source(["agent", "status", "handled"]);
             return d && d.agent.includes("acme-desk") ? d : null;
           }"""
    )
    first = await studio.wait(
        """() => {
             const d = loomTest.source(["seq", "topic", "source"]);
             return d && d.topic.length >= 5 ? d : null;
           }"""
    )
    # both tenants publish 10 events/s: once the page shows 10 newer rows of acme's, globex
    # has published about as many meanwhile, which the view must have left out
    await studio.wait(
        """(last) => {
             const d = loomTest.source(["seq", "topic", "source"]);
             return d && d.seq.filter((s) => s > last).length >= 10 ? d : null;
           }""",
        max(first["seq"]),
    )
    agents = await studio.source("agent", "status", "handled")
    events = await studio.source("seq", "topic", "source")
    assert agents["agent"] == ["acme-desk"]
    assert set(events["topic"]) == {"acme.orders.new"}
    header = studio.page.get_by_text("tenant acme", exact=True)
    await playwright_api.expect(header).to_be_visible(timeout=WAIT_MS)
    note = studio.page.get_by_text("Topics, Editor, Builder and History read the whole bus")
    await playwright_api.expect(note).to_be_visible(timeout=WAIT_MS)
    await studio.page.screenshot(path=tmp_path / "studio-tenant.png", full_page=True)
    # only two tabs; the traces listed are those acme's agent took part in
    tabs = studio.page.locator(".bk-tab")
    await playwright_api.expect(tabs).to_have_text(["Dashboard", "Traces"])
    await tabs.nth(1).click()
    traces = await studio.wait(
        """() => {
             const d = loomTest.source(["trace", "root", "agents", "trace_id"]);
             return d && d.trace.length >= 3 ? d : null;
           }"""
    )
    assert all("acme-desk" in agents for agents in traces["agents"]), traces["agents"]
    assert not any("globex" in agents for agents in traces["agents"]), traces["agents"]
    await studio.page.screenshot(path=tmp_path / "studio-tenant-traces.png", full_page=True)
    assert not studio.errors
