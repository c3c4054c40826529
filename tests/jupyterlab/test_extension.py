"""The Loom extension in a real JupyterLab, driven in Debian's chromium.

A project folder with a plain ``loom.toml``; two small agents run on its bus in this
process (the runtime embeds the bus and writes ``.loom/bus.json``); ``jupyter lab``
serves the folder. The studio that Jupyter starts behind its proxy joins that bus by
discovery, as it would for a user's project.

What the studio page shows is read from the Bokeh models its frame holds (the data of
each table as it arrived over the websocket) and, where a person would look or click,
through Playwright's locators. Screenshots go to the test's temporary folder and, with
``LOOM_SCREENSHOTS=docs/img``, to the docs.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psutil
import pytest
import pytest_asyncio

from loom_kernel import Agent, Context, Envelope, on_event, open_runtime
from tests.support.browser import CHROMIUM, launch_chromium
from tests.support.jupyterlab import Lab, LabPage, publish, running_lab

playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect

pytestmark = [
    pytest.mark.browser,
    pytest.mark.multiprocess,
    pytest.mark.timeout(240),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: `make browser`"),
]

WAIT_MS = 30_000  # the bound of every wait in the page (the studio's first start included)
VIEWPORT = {"width": 1400, "height": 900}
AGENTS = {"sensor", "monitor"}
TOPICS = {"sensor.temp.*", "alert.temp.*"}
PATTERN_INPUT = "topic pattern, e.g. market.price.*"

# Installed in every frame before its own scripts: reads the Bokeh models of the studio.
HELPERS = r"""
window.loomTest = {
  // the data of the first ColumnDataSource holding all these columns, as plain arrays
  source(columns) {
    const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
    for (const m of doc ? doc.all_models : []) {
      if (m.type === "ColumnDataSource" && columns.every((c) => c in m.data)) {
        return Object.fromEntries(Object.entries(m.data).map(([k, v]) => [k, Array.from(v)]));
      }
    }
    return null;
  },
};
"""


class Sensor(Agent):
    """A kitchen thermometer: 20 readings a second on ``sensor.temp.kitchen``."""

    async def run(self, ctx: Context) -> None:
        n = 0
        while True:
            n += 1
            await ctx.emit("sensor.temp.kitchen", {"n": n, "celsius": 20 + n % 5})
            await asyncio.sleep(0.05)


class Monitor(Agent):
    """Raises ``alert.temp.<room>`` on the warm readings."""

    @on_event("sensor.temp.*")
    async def check(self, event: Envelope, ctx: Context) -> None:
        if event.data["celsius"] >= 23:
            await ctx.emit(f"alert.temp.{event.topic.rsplit('.', 1)[-1]}", event.data)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def lab(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Lab]:
    """``jupyter lab`` in a project folder whose bus carries the two agents."""
    root = tmp_path_factory.mktemp("project")
    (root / "loom.toml").write_text("# a Loom project on the defaults\n")
    # the user already answered Lab's "notify me about Jupyter news?": no toast on the pictures
    # (the harness keeps the user's settings under its JUPYTER_CONFIG_DIR, root/.lab/config)
    notification = root / ".lab/config/lab/user-settings/@jupyterlab/apputils-extension"
    notification.mkdir(parents=True)
    (notification / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    async with open_runtime(root / "loom.toml") as rt:
        await rt.start(Sensor("sensor"), Monitor("monitor"))
        # the harness waits for Lab with blocking calls: off the loop the agents run on
        server = running_lab(root)
        lab = await asyncio.to_thread(server.__enter__)
        try:
            yield lab
        finally:
            await asyncio.to_thread(server.__exit__, None, None, None)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with launch_chromium() as chromium:
        yield chromium


@pytest_asyncio.fixture(loop_scope="module")
async def lab_page(browser: Any, lab: Lab) -> AsyncIterator[LabPage]:
    """A fresh JupyterLab page, recording its requests and errors from the first one."""
    context = await browser.new_context(viewport=VIEWPORT)
    await context.add_init_script(HELPERS)
    try:
        page = await LabPage.open(context, lab)
        await expect(page.page.locator(".jp-Launcher")).to_be_visible(timeout=60_000)
        yield page
    finally:
        await context.close()


async def shot(page: LabPage, name: str, folder: Path) -> None:
    await page.screenshot(folder / name)
    publish(folder / name)


async def studio_frame(page: LabPage) -> Any:
    """The frame of the studio tab, once its page has rendered."""
    iframe = page.page.locator(".jp-LoomStudioTab iframe")
    await expect(iframe).to_be_visible(timeout=WAIT_MS)
    frame = await (await iframe.element_handle()).content_frame()
    await frame.wait_for_function(
        "() => window.Bokeh && Bokeh.documents.length && Bokeh.index.roots.length",
        timeout=WAIT_MS,
    )
    return frame


async def wait_in(frame: Any, predicate: str, arg: Any = None) -> Any:
    """Poll ``predicate`` (a JS function of ``arg``) in ``frame`` until it is truthy."""
    handle = await frame.wait_for_function(predicate, arg=arg, timeout=WAIT_MS)
    return await handle.json_value()


async def running_agents(frame: Any) -> dict[str, list[Any]]:
    """The studio's agents table, once every test agent shows as running."""
    return await wait_in(
        frame,
        """(want) => {
             const d = loomTest.source(["agent", "status", "handled"]);
             const running = d && d.agent.filter((a, i) => d.status[i] === "running");
             return running && want.every((a) => running.includes(a)) ? d : null;
           }""",
        sorted(AGENTS),
    )


async def event_rows(frame: Any, condition: str) -> dict[str, list[Any]]:
    """The event stream's rows, once there are some and ``condition`` (a JS function of
    a row's topic and source) holds for every one."""
    return await wait_in(
        frame,
        f"""() => {{
              const d = loomTest.source(["seq", "topic", "source"]);
              const ok = {condition};
              return d && d.seq.length && d.topic.every((t, i) => ok(t, d.source[i])) ? d : null;
            }}""",
    )


def assert_clean(page: LabPage) -> None:
    """Nothing left this machine, every request was answered, no script (of ours or any
    other, in Lab or in the studio's frame) logged an error."""
    assert page.outside() == []
    assert page.failed == []
    assert page.errors == []
    assert page.console == []


# -- the launcher and the studio tab ---------------------------------------------------------


async def test_launcher_card_opens_the_studio_on_the_live_agents(
    lab_page: LabPage, tmp_path: Path
) -> None:
    card = lab_page.page.locator(".jp-LauncherCard", has_text="Loom Studio")
    await expect(card).to_be_visible(timeout=WAIT_MS)
    await shot(lab_page, "lab-launcher.png", tmp_path)

    await card.click()
    tab = lab_page.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="Loom Studio")
    await expect(tab).to_be_visible(timeout=WAIT_MS)
    frame = await studio_frame(lab_page)
    assert urlsplit(frame.url).path == "/loom-studio/"
    assert urlsplit(frame.url).netloc == urlsplit(lab_page.lab.url).netloc  # same origin
    agents = await running_agents(frame)
    assert set(agents["agent"]) >= AGENTS
    rows = await event_rows(frame, "(topic) => /^(sensor|alert)\\.temp\\./.test(topic)")
    assert {"sensor", "monitor"} >= set(rows["source"])
    await lab_page.page.wait_for_timeout(1500)  # a few refreshes: the plots have history
    await shot(lab_page, "lab-studio.png", tmp_path)

    # the palette's command shows the same tab, not a second one
    await from_palette(lab_page, "Loom Studio")
    await expect(tab).to_have_count(1)
    assert_clean(lab_page)


async def from_palette(page: LabPage, label: str) -> None:
    """Run a command as a user picks it in the palette. The palette opens through Lab's
    own command (``window.jupyterapp``, which the harness exposes): a click on the View menu
    waits for a still page, which a busy machine running the studio may not give in time."""
    await page.page.evaluate(
        "() => jupyterapp.commands.execute('apputils:activate-command-palette')"
    )
    palette = page.page.locator(".lm-CommandPalette-input")
    await palette.fill(label)
    await expect(page.page.locator(".lm-CommandPalette-item", has_text=label)).to_be_visible()
    await palette.press("Enter")


# -- the sidebar ---------------------------------------------------------------------------


async def open_sidebar(page: LabPage) -> Any:
    await page.page.locator('.jp-SideBar .lm-TabBar-tab[data-id="loom-sidebar"]').click()
    sidebar = page.page.locator("#loom-sidebar")
    await expect(sidebar).to_be_visible(timeout=WAIT_MS)
    return sidebar


def sidebar_row(sidebar: Any, section: str, key: str) -> Any:
    return sidebar.locator(f'[data-section="{section}"] li[data-key="{key}"] button')


async def test_sidebar_lists_live_agents_and_topics_and_opens_their_views(
    lab_page: LabPage, tmp_path: Path
) -> None:
    sidebar = await open_sidebar(lab_page)
    for agent in AGENTS:
        row = sidebar_row(sidebar, "agents", agent)
        await expect(row).to_contain_text("running", timeout=WAIT_MS)
    for topic in TOPICS:
        await expect(sidebar_row(sidebar, "topics", topic)).to_be_visible(timeout=WAIT_MS)
    # rates are measured: the sensor publishes ~20 events/s
    sensor_rate = sidebar_row(sidebar, "agents", "sensor").locator(".jp-LoomSidebar-rate")
    await expect(sensor_rate).not_to_have_text("0.0/s", timeout=WAIT_MS)
    await expect(sidebar.locator(".jp-LoomSidebar-status")).to_contain_text("events/s")

    # an agent: the studio opens on the events it published
    await sidebar_row(sidebar, "agents", "sensor").click()
    frame = await studio_frame(lab_page)
    assert parse_qs(urlsplit(frame.url).query) == {"agent": ["sensor"]}
    rows = await event_rows(frame, "(topic, source) => source === 'sensor'")
    assert set(rows["topic"]) == {"sensor.temp.kitchen"}
    await expect(frame.get_by_text("the events agent sensor published")).to_be_visible()
    await lab_page.page.wait_for_timeout(1000)
    await shot(lab_page, "lab-sidebar.png", tmp_path)

    # a topic: the event stream's filter starts with its pattern
    await sidebar_row(sidebar, "topics", "alert.temp.*").click()
    frame = await wait_for_new_frame(lab_page, "topic=alert.temp.")
    await expect(frame.get_by_placeholder(PATTERN_INPUT)).to_have_value("alert.temp.*")
    rows = await event_rows(frame, "(topic) => topic.startsWith('alert.temp.')")
    assert set(rows["source"]) == {"monitor"}
    assert_clean(lab_page)


async def wait_for_new_frame(page: LabPage, fragment: str) -> Any:
    """The studio frame once it shows a URL containing ``fragment`` and has rendered."""
    await page.page.wait_for_function(
        """(fragment) => {
             const frame = document.querySelector(".jp-LoomStudioTab iframe");
             const win = frame && frame.contentWindow;
             return win && win.location.href.includes(fragment) && win.Bokeh
               && win.Bokeh.documents.length && win.Bokeh.index.roots.length;
           }""",
        arg=fragment,
        timeout=WAIT_MS,
    )
    return await studio_frame(page)


# -- the studio's own port ---------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect (to Jupyter's login page) is the answer itself


def get(url: str, headers: dict[str, str] | None = None, timeout: float = 60) -> tuple[int, Any]:
    """``(status, JSON body or None)`` of a GET, redirects not followed."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, None


def studio_port(lab: Lab) -> int:
    """The port of the studio Jupyter started (its command line says it)."""
    for child in psutil.Process(lab.process.pid).children(recursive=True):
        command = child.cmdline()
        if "loom_studio" in command and "--port" in command:
            return int(command[command.index("--port") + 1])
    raise AssertionError(f"no studio process under jupyter lab:\n{lab.output()}")


async def test_studio_answers_through_jupyter_only(lab: Lab) -> None:
    status, summary = await asyncio.to_thread(
        get, f"{lab.url}/loom-studio/api/live", {"Authorization": f"token {lab.token}"}
    )
    assert status == 200
    assert {"bus", "agents", "topics", "events_per_s"} <= set(summary)
    # without Jupyter's token, Jupyter itself sends the browser to its login page
    status, _ = await asyncio.to_thread(get, f"{lab.url}/loom-studio/api/live")
    assert status in (302, 403)
    port = studio_port(lab)
    for path in ("/", "/api/live", "/static/js/bokeh.min.js", "/ws"):
        status, _ = await asyncio.to_thread(get, f"http://127.0.0.1:{port}{path}", None, 10)
        assert status == 403, path
