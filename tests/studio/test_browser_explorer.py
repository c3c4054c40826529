"""The topic explorer and the live editor in a real browser (Debian's chromium, driven by
Playwright), served beside a small project's agents on a private bus.

The agents run on one runtime, the studio on another joined to the same bus (as ``loom
studio`` beside ``loom run``): the editor's saves reach the agents through the bus
(``loom.code.reload``). Screenshots go to the test's folder, and to ``$LOOM_SCREENSHOTS``
(``docs/img``) when set.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from loom_kernel import Agent, Runtime, open_runtime
from loom_studio.app import serve
from loom_studio.feed import StudioFeed
from tests.conftest import wait_until
from tests.studio.test_browser import (
    CHROMIUM,
    HELPERS,
    LOCAL_HOSTS,
    VIEWPORT,
    WAIT_MS,
    Studio,
    host,
    playwright_api,
)
from tests.support.browser import launch_chromium

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="no /usr/bin/chromium: `make browser` installs it (apt-get install chromium)",
    ),
]

GREETER = '''\
from loom_kernel import Agent, on_event


class Greeter(Agent):
    """Greets on request; counts the orders it sees (in ``state``: kept across reloads)."""

    @on_event("greet.*")
    async def greet(self, event, ctx):
        await ctx.reply(event, f"hello, {event.data}")

    @on_event("orders.*")
    async def order(self, event, ctx):
        self.state.setdefault("orders", []).append(event.data)
'''


class Feeder(Agent):
    """Publishes an order and two prices every 50 ms (not a project file: not editable)."""

    async def run(self, ctx: Any) -> None:
        n = 0
        while True:
            n += 1
            await ctx.emit("orders.new.AAPL", {"side": "buy", "qty": n, "price": 101.5})
            await ctx.emit("market.price.BTC", {"symbol": "BTC", "price": 61_000 + n % 7})
            await ctx.emit("market.price.ETH", {"symbol": "ETH", "price": 3_000 + n % 5})
            await asyncio.sleep(0.05)


@dataclass
class Project:
    url: str
    rt: Runtime
    source: Path

    async def greeting(self) -> str:
        return (await self.rt.request("greet.x", "Ada", timeout=5)).data

    def orders(self) -> list[Any]:
        return self.rt.agents["greeter"].agent.state.get("orders", [])


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def project(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Project]:
    folder = tmp_path_factory.mktemp("editable")
    name = f"greeters_{folder.name}"
    source = folder / f"{name}.py"
    source.write_text(GREETER)
    (folder / "loom.toml").write_text(
        f'[runtime]\nheartbeat_interval = 0.2\n\n[agents.greeter]\nmodule = "{name}:Greeter"\n'
    )
    sys.path.insert(0, str(folder))
    try:
        async with open_runtime(folder / "loom.toml") as rt:
            module = __import__(name)
            await rt.start(module.Greeter("greeter"), Feeder("feeder"))
            feed = await StudioFeed().open(rt.config)  # the studio's own runtime, on the bus
            server = serve(rt.config, port=0, feed=feed)
            try:
                yield Project(f"http://127.0.0.1:{server.port}/", rt, source)
            finally:
                server.stop()
                await feed.aclose()
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop(name, None)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with launch_chromium() as chromium:
        yield chromium


@pytest_asyncio.fixture(loop_scope="module")
async def studio(browser: Any, project: Project) -> AsyncIterator[Studio]:
    context = await browser.new_context(viewport=VIEWPORT)
    await context.add_init_script(HELPERS)
    page = await context.new_page()
    session = Studio(page)
    page.on("request", lambda request: session.urls.append(request.url))
    page.on("websocket", lambda socket: session.urls.append(socket.url))
    page.on("requestfailed", lambda request: session.failed.append(request.url))
    page.on("pageerror", lambda error: session.errors.append(str(error)))
    try:
        await page.goto(project.url)
        await session.wait("() => window.Bokeh && loomTest.rendered()")
        yield session
    finally:
        await context.close()


def no_request_left_the_machine(studio: Studio) -> None:
    hosts = {host(url) for url in studio.urls} - {None}
    assert hosts <= LOCAL_HOSTS, [u for u in studio.urls if host(u) not in LOCAL_HOSTS]
    assert studio.failed == []
    assert studio.errors == []


# -- the topic explorer -----------------------------------------------------------------------

SHOWS_JSON = """(needle) => loomTest.models().some(
    (m) => m.type.endsWith("JSON") && typeof m.text === "string" && m.text.includes(needle))"""


async def test_explorer_shows_the_tree_the_schema_and_publishes_a_test_event(
    studio: Studio, project: Project, tmp_path: Path
) -> None:
    page = studio.page
    await studio.open_tab("Topics")
    tree = await studio.wait(
        """() => { const d = loomTest.source(["topic", "events", "path", "kind"]);
                   return d && d.path.includes("orders.new.AAPL") ? d : null; }"""
    )
    assert {"orders", "orders.new", "orders.new.AAPL"} <= set(tree["path"])
    assert not any(path.startswith("loom.") for path in tree["path"])
    x, y = await studio.wait("() => loomTest.rowCenter('topic', 'AAPL')")
    await page.mouse.click(x, y, delay=100)
    await studio.wait(SHOWS_JSON, '"qty"')  # the inferred schema: {"qty": {"type": "integer"}...}
    await studio.wait(
        """() => { const d = loomTest.source(["agent", "pattern"]);
                   return d && d.agent.includes("greeter") && d.pattern.includes("orders.*"); }"""
    )
    pattern = page.get_by_placeholder("pattern, e.g. market.*.AAPL")
    await pattern.fill("market.*")
    await playwright_api.expect(page.get_by_text("2 topics seen match")).to_be_visible(
        timeout=WAIT_MS
    )
    side = page.get_by_label("side")
    await side.fill("sell-from-the-browser")
    await side.press("Enter")
    await page.get_by_role("button", name="Publish").click()
    await playwright_api.expect(page.get_by_text(re.compile("^published "))).to_be_visible(
        timeout=WAIT_MS
    )
    await wait_until(
        lambda: any(o.get("side") == "sell-from-the-browser" for o in project.orders()),
        timeout=WAIT_MS / 1000,
    )  # the subscribed agent really got it
    await studio.wait(  # and the explorer counts the studio among the topic's publishers
        """() => { const d = loomTest.source(["source", "events"]);
                   return d && d.source.length === 2; }"""
    )
    await page.set_viewport_size({"width": VIEWPORT["width"], "height": 1300})
    await studio.shot("studio-topics.png", tmp_path)
    no_request_left_the_machine(studio)


# -- the live editor ------------------------------------------------------------------------

EDITOR = ".ace_editor"


async def set_code(studio: Studio, change: str, arg: Any) -> None:
    """Change the editor's text in the page, as typing would (Ace's own API)."""
    await studio.page.locator(EDITOR).evaluate(
        f"(el, arg) => {{ const e = el.env.editor;"
        f" e.setValue(({change})(e.getValue(), arg), 1); }}",  # 1: the cursor at the end
        arg,
    )


async def save(studio: Studio) -> None:
    await studio.page.get_by_role("button", name="Save and reload").click()


# Seen once (1 of 8 runs, a fresh-clone `make test` at 6dc82a1): the Editor tab was active but
# its content never came (no Ace editor, nothing under the tabs, no page error) within 20 s.
# Not reproduced alone, beside two busy CPUs, or in the whole browser set again; the cause is
# not known. One retry, on a fresh page (the project is as the test found it: it had not
# saved anything yet).
@pytest.mark.flaky(reruns=1)
async def test_editor_saves_reloads_marks_a_broken_line_and_reverts(
    studio: Studio, project: Project, tmp_path: Path
) -> None:
    page = studio.page
    await studio.open_tab("Editor")
    ace = page.locator(EDITOR)
    await playwright_api.expect(ace).to_be_visible(timeout=WAIT_MS)
    await playwright_api.expect(page.locator(".ace_line").first).to_be_visible(timeout=WAIT_MS)
    await wait_until(lambda: len(project.orders()) > 0, timeout=WAIT_MS / 1000)
    assert await project.greeting() == "hello, Ada"

    await set_code(studio, "(text, arg) => text.replace('hello, ', arg)", "hi there, ")
    await save(studio)
    await playwright_api.expect(page.get_by_text(re.compile(r"greeter → v2"))).to_be_visible(
        timeout=WAIT_MS
    )
    assert await project.greeting() == "hi there, Ada"
    assert "hi there" in project.source.read_text()

    # a syntax error: its line is marked, the running version goes on handling events
    await set_code(
        studio, "(text, arg) => text.replace('async def greet', arg)", "async def greet("
    )
    await save(studio)
    marked = page.locator(".ace_gutter-cell.ace_error")
    await playwright_api.expect(marked).to_have_text("8", timeout=WAIT_MS)
    await playwright_api.expect(
        page.get_by_text(re.compile(r"^line 8: syntax error"))
    ).to_be_visible()
    before = len(project.orders())
    await wait_until(lambda: len(project.orders()) > before + 5, timeout=WAIT_MS / 1000)
    assert await project.greeting() == "hi there, Ada"
    assert project.rt.agents["greeter"].version == 2
    await page.set_viewport_size({"width": VIEWPORT["width"], "height": 1100})
    await studio.shot("studio-editor.png", tmp_path)

    # revert to the first version: written, reloaded, the first greeting again
    versions = page.get_by_label("Version")
    first = await versions.locator("option", has_text=re.compile(r"^1 · ")).text_content()
    await versions.select_option(label=first)
    added = page.get_by_text('+        await ctx.reply(event, f"hi there, {event.data}")')
    await playwright_api.expect(added).to_be_visible(timeout=WAIT_MS)  # version 1 → the editor
    await page.get_by_role("button", name="Revert to this version").click()
    await playwright_api.expect(page.get_by_text(re.compile(r"greeter → v3"))).to_be_visible(
        timeout=WAIT_MS
    )
    assert await project.greeting() == "hello, Ada"
    assert project.source.read_text() == GREETER
    no_request_left_the_machine(studio)
