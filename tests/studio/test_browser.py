"""The standalone studio in a real browser (Debian's chromium, driven by Playwright),
served beside the Market Analyst's six agents on a private bus.

What the page shows is read from the Bokeh models the browser holds (``Bokeh.documents``:
the data of each table and plot as it arrived over the websocket) and, where a person
would look or click, from the DOM through Playwright's locators, which pierce Bokeh's
shadow roots. Every wait polls in the page with a bound (``wait_for_function``).

Screenshots of each page go to the test's temporary folder; with
``LOOM_SCREENSHOTS=docs/img`` the ones the docs show are written there too.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from demo.market_analyst.app import View, ViewAgent, agents
from demo.market_analyst.bench import bench_config
from loom_kernel import open_runtime
from loom_kernel.config import parse_config
from loom_studio.app import serve
from loom_studio.feed import StudioFeed
from tests.conftest import wait_until
from tests.support.browser import CHROMIUM, launch_chromium

playwright_api = pytest.importorskip("playwright.async_api")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="no /usr/bin/chromium: `make browser` installs it (apt-get install chromium)",
    ),
]

SIX = {"data", "executor", "planner", "risk", "sentiment", "trend"}
LOCAL_HOSTS = {"127.0.0.1", "localhost"}
WAIT_MS = 20_000  # the bound of every wait in the page
VIEWPORT = {"width": 1400, "height": 1000}
PATTERN_INPUT = "topic pattern, e.g. market.price.*"
EVENT_CELL = '.tabulator-cell[tabulator-field="topic"]'  # a cell of the event stream only
DELIVERY_CELL = '.tabulator-cell[tabulator-field="loss %"]'  # a cell of the QoS table only

# Installed in every page before its own scripts: reads the models of the page's document.
HELPERS = r"""
window.loomTest = {
  models() {
    const doc = window.Bokeh && Bokeh.documents && Bokeh.documents[0];
    return doc ? [...doc.all_models] : [];
  },
  // the data of the first ColumnDataSource holding all these columns, as plain arrays
  source(columns) {
    for (const m of this.models()) {
      if (m.type === "ColumnDataSource" && columns.every((c) => c in m.data)) {
        return Object.fromEntries(Object.entries(m.data).map(([k, v]) => [k, Array.from(v)]));
      }
    }
    return null;
  },
  // the value of a Number indicator (an HTML model: its label, then its value)
  number(label) {
    const text = (html) => new DOMParser().parseFromString(html, "text/html").body.textContent;
    for (const m of this.models()) {
      if (m.type !== "panel.models.markup.HTML" || !m.text) continue;
      const parts = text(text(m.text)).split("\n").map((s) => s.trim()).filter(Boolean);
      if (parts.length === 2 && parts[0] === label) return Number(parts[1].replace(/,/g, ""));
    }
    return null;
  },
  figure(title) {
    const titled = (m) => m.type === "Figure" && m.title && m.title.text.startsWith(title);
    return this.models().find(titled);
  },
  // page coordinates of a data point of a figure
  point(title, x, y) {
    const view = Bokeh.index.find_one(this.figure(title));
    if (!view) return null;
    const box = (view.canvas_view ?? view).el.getBoundingClientRect();
    return [box.left + view.frame.x_scale.compute(x), box.top + view.frame.y_scale.compute(y)];
  },
  // [scrollTop, clientHeight, scrollHeight] of the table holding cells matching `selector`
  // [scrollTop, clientHeight, scrollHeight, clientWidth, scrollWidth] of that table
  scroll(selector) {
    const walk = (root) => {
      for (const el of root.querySelectorAll("*")) {
        if (el.classList.contains("tabulator-tableholder") && el.querySelector(selector)) {
          return el;
        }
        const inner = el.shadowRoot && walk(el.shadowRoot);
        if (inner) return inner;
      }
      return null;
    };
    const holder = walk(document);
    return holder && [holder.scrollTop, holder.clientHeight, holder.scrollHeight,
                      holder.clientWidth, holder.scrollWidth];
  },
  // the view of the figure drawing a source with all these columns
  plot(columns) {
    const draws = (r) => r.data_source && columns.every((c) => c in r.data_source.data);
    const fig = this.models().find((m) => m.type === "Figure" && m.renderers.some(draws));
    return fig && Bokeh.index.find_one(fig);
  },
  // [left, top, right, bottom] in px of the text a text glyph draws at (x, y)
  textBox(view, x, y, text, align, baseline, yOffset) {
    const ctx = document.createElement("canvas").getContext("2d");
    ctx.font = "9pt helvetica";
    const w = ctx.measureText(text).width, h = 12;
    const px = view.frame.x_scale.compute(x), py = view.frame.y_scale.compute(y) + yOffset;
    const left = align === "center" ? px - w / 2 : px;
    const top = baseline === "bottom" ? py - h : py;
    return [left, top, left + w, top + h];
  },
  // the rate labels and node names of the topology, as boxes in px
  topologyBoxes() {
    const view = this.plot(["lx", "ly", "label"]);
    const e = this.source(["lx", "ly", "label", "x0", "y0", "x1", "y1", "head"]);
    const n = this.source(["x", "y", "name", "kind"]);
    if (!view || !e || !n) return null;
    const labels = e.label.map((t, i) => t && this.textBox(view, e.lx[i], e.ly[i], t,
                                                            "center", "bottom", -3));
    const names = n.name.map((t, i) => this.textBox(view, n.x[i], n.y[i], t, "center",
                                                    "top", 14));
    const markers = n.x.map((x, i) => {
      const px = view.frame.x_scale.compute(x), py = view.frame.y_scale.compute(n.y[i]);
      return [px - 10, py - 10, px + 10, py + 10];
    });
    const heads = e.x1.map((x, i) => {  // an arrowhead: the vee back from the arrow's end
      const tx = view.frame.x_scale.compute(x), ty = view.frame.y_scale.compute(e.y1[i]);
      const sx = view.frame.x_scale.compute(e.x0[i]), sy = view.frame.y_scale.compute(e.y0[i]);
      const n = Math.hypot(tx - sx, ty - sy) || 1, h = e.head[i] / 2;
      const cx = tx - (tx - sx) / n * h, cy = ty - (ty - sy) / n * h;
      return [cx - h, cy - h, cx + h, cy + h];
    });
    return {labels: labels.filter(Boolean), texts: e.label.filter(Boolean), names, markers,
            heads};
  },
  // the page boxes of the table holding these columns and of the card around it
  inCard(columns) {
    const table = this.models().find((m) => m.type.endsWith("DataTabulator") && m.source
                                            && columns.every((c) => c in m.source.data));
    const card = table && this.models().find((m) => m.type.endsWith(".Card")
                                                    && m.children.includes(table));
    const box = (m) => {
      const r = Bokeh.index.find_one(m).el.getBoundingClientRect();
      return {top: r.top, bottom: r.bottom, left: r.left, right: r.right};
    };
    return card ? [box(table), box(card)] : null;
  },
  // the centre of the table row whose `field` cell reads `text` (null: the first row)
  rowCenter(field, text) {
    const cells = [];
    const walk = (root) => {
      for (const el of root.querySelectorAll("*")) {
        if (el.getAttribute("tabulator-field") === field
            && el.classList.contains("tabulator-cell")) cells.push(el);
        if (el.shadowRoot) walk(el.shadowRoot);
      }
    };
    walk(document);
    const cell = text === null ? cells[0] : cells.find((c) => c.textContent.trim() === text);
    const box = cell && cell.closest(".tabulator-row").getBoundingClientRect();
    return box && box.height > 0 && [box.left + box.width / 2, box.top + box.height / 2];
  },
  rendered() {
    return [...Bokeh.index.roots].some((v) => v.el && v.el.getBoundingClientRect().height > 0);
  },
};
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def studio_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """The six agents at 20 ticks/s (~100 events/s, the demo's own rate: the 250 of 50
    ticks/s, beside the server, chromium and coverage on 2 cores, left the page seconds
    behind), the demo's terminal view (an observer agent) and the studio, on this loop."""
    folder = tmp_path_factory.mktemp("studio")
    settings = bench_config(folder, 20, ["AAPL", "BTC-USDT"])
    config = parse_config(settings, path=folder / "loom.toml")
    async with open_runtime(config) as rt:
        await rt.start(*agents(), ViewAgent(View()))
        feed = await StudioFeed().open(rt.config)
        server = serve(rt.config, port=0, feed=feed)
        try:
            yield f"http://127.0.0.1:{server.port}/"
        finally:
            server.stop()
            await feed.aclose()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with launch_chromium() as chromium:
        yield chromium


@dataclass
class Studio:
    """One browser session of the studio, and every URL it asked for."""

    page: Any
    urls: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    async def wait(self, predicate: str, arg: Any = None, timeout: float = WAIT_MS) -> Any:
        """Poll ``predicate`` (a JS function of ``arg``) in the page until it is truthy."""
        handle = await self.page.wait_for_function(predicate, arg=arg, timeout=timeout)
        return await handle.json_value()

    async def source(self, *columns: str) -> dict[str, list[Any]]:
        """The data of the source holding ``columns``, once it has a row."""
        return await self.wait(
            "(cs) => { const d = loomTest.source(cs); return d && d[cs[0]].length ? d : null; }",
            list(columns),
        )

    async def open_tab(self, name: str) -> None:
        """Click a tab of the studio, and see that it is the one shown (a failure then
        says whether the click was taken, or the server never sent the tab's content)."""
        await self.page.get_by_text(name, exact=True).first.click()
        # tabs nest (the Traces tab holds Trace / Search / Latency): find the active one named so
        exact = re.compile(rf"^\s*{re.escape(name)}\s*$")
        active = self.page.locator(".bk-tab.bk-active").filter(has_text=exact)
        await playwright_api.expect(active).to_have_count(1, timeout=WAIT_MS)

    async def shot(self, name: str, folder: Path) -> None:
        await self.page.screenshot(path=folder / name, full_page=True)
        publish(folder / name)


def publish(screenshot: Path) -> None:
    """Copy a screenshot to ``$LOOM_SCREENSHOTS`` (``docs/img`` for the docs), when set."""
    target = os.environ.get("LOOM_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(target) / screenshot.name)


@pytest_asyncio.fixture(loop_scope="module")
async def studio(browser: Any, studio_url: str) -> AsyncIterator[Studio]:
    """A fresh page of the studio, recording its requests from the first one."""
    context = await browser.new_context(viewport=VIEWPORT)
    await context.add_init_script(HELPERS)
    page = await context.new_page()
    session = Studio(page)
    page.on("request", lambda request: session.urls.append(request.url))
    page.on("websocket", lambda socket: session.urls.append(socket.url))
    page.on("requestfailed", lambda request: session.failed.append(request.url))
    page.on("pageerror", lambda error: session.errors.append(str(error) + "\n" + str(error.stack)))
    try:
        await page.goto(studio_url)
        await session.wait("() => window.Bokeh && loomTest.rendered()")
        yield session
    finally:
        await context.close()


# -- the dashboard ---------------------------------------------------------------------------


async def test_agents_table_lists_the_six_agents_running(studio: Studio) -> None:
    agents = await studio.wait(
        """(six) => {
             const d = loomTest.source(["agent", "status", "handled"]);
             const running = d && d.agent.filter((a, i) => d.status[i] === "running");
             return running && six.every((a) => running.includes(a)) ? d : null;
           }""",
        sorted(SIX),
    )
    assert set(agents["agent"]) == SIX
    assert set(agents["status"]) == {"running"}
    # and the table shows them: six green "running" cells
    cells = studio.page.locator('.tabulator-cell[tabulator-field="status"]', has_text="running")
    await playwright_api.expect(cells).to_have_count(6)
    assert await studio.wait("() => loomTest.number('agents running') === 6")
    # the demo's terminal view is an observer: named below the table, not counted
    observers = studio.page.get_by_text("Observers (they watch")
    await playwright_api.expect(observers).to_contain_text("terminal-view", timeout=WAIT_MS)


async def test_event_stream_gets_new_rows(studio: Studio) -> None:
    # the table keeps 500 rows, full within seconds here: new rows are new sequence numbers
    first = await studio.source("seq", "topic", "source")
    newer = await studio.wait(
        """(last) => {
             const d = loomTest.source(["seq", "topic", "source"]);
             return d && Math.max(...d.seq) > last + 20 ? d : null;
           }""",
        max(first["seq"]),
    )
    added = set(newer["seq"]) - set(first["seq"])
    assert len(added) > 20
    assert set(newer["source"]) >= {"data", "trend", "risk", "sentiment"}
    shown = studio.page.locator(EVENT_CELL)
    await playwright_api.expect(shown.first).to_have_text(re.compile(r"^[a-z]+\.[a-z]+\."))


async def test_event_stream_stays_on_the_newest_rows(studio: Studio) -> None:
    # the newest event is the first row, in view; the table never scrolls away from it
    await studio.wait(
        "() => { const d = loomTest.source(['seq', 'topic']); return d && d.seq.length >= 500; }"
    )
    samples: list[list[int]] = []
    # about ten refreshes a second, with the 500 rows rolling over; a loaded machine draws
    # fewer: sample until six have been seen (at most 200 samples, a minute or so)
    while len({first for _, first, _ in samples}) <= 5 and len(samples) < 200:
        samples.append(
            await studio.wait(
                """(cell) => {
                     const d = loomTest.source(["seq", "topic"]), at = loomTest.scroll(cell);
                     return d && at && [at[0], d.seq[0], Math.max(...d.seq)];
                   }""",
                EVENT_CELL,
            )
        )
        await studio.page.wait_for_timeout(100)
    assert all(top == 0 and first == newest for top, first, newest in samples), samples
    assert len({first for _, first, _ in samples}) > 5  # and new rows kept coming


async def test_a_click_on_the_moving_event_stream_shows_the_clicked_events_payload(
    studio: Studio,
) -> None:
    # new rows arrive on top about ten times a second, and the table is redrawn each time:
    # a click as a person makes it (the button held 100 ms) must show the event pressed
    await studio.page.set_viewport_size({"width": VIEWPORT["width"], "height": 1600})
    await studio.wait(
        "() => { const d = loomTest.source(['seq', 'topic']); return d && d.seq.length >= 50; }"
    )
    await studio.page.evaluate(RECORD_CLICKED_ROW)
    x, y = await studio.wait("() => loomTest.rowCenter('topic', null)")
    await studio.page.mouse.click(x, y + 90, delay=100)  # on the fourth row, or so
    [clicked] = await studio.wait("() => window.loomClicked.length && window.loomClicked")
    payload = await studio.wait(
        """(time) => {
             const json = loomTest.models().find((m) => m.type.endsWith("JSON"));
             return json && json.text.includes(time) && JSON.parse(json.text);
           }""",
        clicked["time"],  # the pressed row's, or never: no need to hurry a loaded machine
    )
    assert (payload["time"], payload["topic"]) == (clicked["time"], clicked["topic"])


async def test_qos_shows_a_positive_moving_event_rate(studio: Studio) -> None:
    first = await studio.wait("() => { const n = loomTest.number('events/s'); return n > 0 && n; }")
    moved = await studio.wait(
        "(v) => { const n = loomTest.number('events/s'); return n > 0 && n !== v && n; }", first
    )
    assert first > 0 and moved > 0 and moved != first
    history = await studio.wait(
        "() => { const d = loomTest.source(['t', 'events', 'p99_ms']);"
        " return d && d.events.filter((n) => n > 0).length >= 2 ? d : null; }"
    )
    assert max(history["events"]) > 0
    assert history["t"] == sorted(history["t"])


async def test_qos_table_shows_every_row_and_column(studio: Studio) -> None:
    await studio.wait(
        "() => { const d = loomTest.source(['agent', 'delivered', 'loss %']);"
        " return d && d.agent.length === 6; }"
    )
    # nothing to scroll to: every row and column is in view
    _, height, total, width, total_width = await studio.wait(
        "(cell) => loomTest.scroll(cell)", DELIVERY_CELL
    )
    assert total <= height + 1, (total, height)  # no row below the fold
    assert total_width <= width + 1, (total_width, width)  # no column cut off
    # and the card holding it does not cut it either
    table, card = await studio.wait("() => loomTest.inCard(['agent', 'delivered', 'loss %'])")
    assert card["top"] <= table["top"] and table["bottom"] <= card["bottom"] + 1, (table, card)
    assert card["left"] <= table["left"] and table["right"] <= card["right"] + 1, (table, card)


async def test_topology_shows_agents_topics_and_live_rates(studio: Studio, tmp_path: Path) -> None:
    expected = {
        **dict.fromkeys(SIX, "agent"),
        **dict.fromkeys(
            ["market.price.*", "analysis.trend.*", "analysis.risk.*", "analysis.sentiment.*",
             "plan.*"],
            "topic",
        ),
    }  # fmt: skip
    nodes = await studio.wait(
        """(want) => {
             const d = loomTest.source(["x", "y", "name", "kind", "marker"]);
             if (!d) return null;
             const kinds = Object.fromEntries(d.name.map((n, i) => [n, d.kind[i]]));
             return Object.entries(want).every(([n, k]) => kinds[n] === k) ? kinds : null;
           }""",
        expected,
    )
    assert nodes.items() >= expected.items()
    assert not [n for n in nodes if n.startswith("plan.") and n != "plan.*"]  # one family
    assert "terminal-view" not in nodes  # an observer: no orphan node
    # the prices edge (the busiest) carries its live rate as a label; "data" has other edges
    label = await studio.wait(
        """() => {
             const d = loomTest.source(["source", "target", "rate", "label"]);
             const i = d ? d.source.findIndex((s, j) => s === "data"
                                               && d.target[j] === "market.price.*") : -1;
             return i >= 0 && d.rate[i] > 0 && d.label[i] ? d.label[i] : null;
           }"""
    )
    assert label.endswith("/s")
    # the rate labels, as drawn, overlap no other label, node, node name or arrowhead
    boxes = await studio.wait(
        "() => { const b = loomTest.topologyBoxes(); return b && b.labels.length >= 5 && b; }"
    )
    overlaps = [
        (boxes["texts"][i], kind, j)
        for i, label in enumerate(boxes["labels"])
        for kind in ("labels", "names", "markers", "heads")
        for j, other in enumerate(boxes[kind])
        if (kind != "labels" or j > i) and overlap(label, other)
    ]
    assert overlaps == [], boxes
    # the QoS plots have a few seconds of history: the picture the docs show
    await studio.wait(
        "() => { const d = loomTest.source(['t', 'events', 'p99_ms']);"
        " return d && d.t.length >= 6; }"
    )
    # the whole page in the window, so that taking the picture redraws no table
    await studio.page.set_viewport_size({"width": VIEWPORT["width"], "height": 1500})
    await playwright_api.expect(studio.page.locator(EVENT_CELL).first).to_be_visible()
    await studio.shot("studio-dashboard.png", tmp_path)


async def test_event_filter_keeps_matching_rows_and_explains_a_bad_pattern(
    studio: Studio,
) -> None:
    pattern = studio.page.get_by_placeholder(PATTERN_INPUT)
    await studio.source("seq", "topic")
    await pattern.fill("plan.*")
    await pattern.press("Enter")
    only_plans = """() => {
        const d = loomTest.source(["seq", "topic"]);
        return d && d.topic.length > 0 && d.topic.every((t) => t.startsWith("plan.")) ? d : null;
    }"""
    plans = await studio.wait(only_plans)
    assert {topic.split(".")[0] for topic in plans["topic"]} == {"plan"}
    shown = studio.page.locator(EVENT_CELL)
    await playwright_api.expect(shown.first).to_have_text(re.compile(r"^plan\."))
    others = shown.filter(has_not_text=re.compile(r"^plan\."))
    await playwright_api.expect(others).to_have_count(0)

    await pattern.fill("market..price")
    await pattern.press("Enter")
    error = studio.page.get_by_text("has an empty segment at position 1")
    await playwright_api.expect(error).to_be_visible(timeout=WAIT_MS)
    await studio.wait(only_plans)  # the last good pattern still applies

    await pattern.fill("")
    await pattern.press("Enter")
    await playwright_api.expect(error).to_be_hidden(timeout=WAIT_MS)
    await studio.wait(
        "() => { const d = loomTest.source(['seq', 'topic']);"
        " return d && d.topic.some((t) => t.startsWith('market.price.')); }"
    )


def overlap(a: list[float], b: list[float]) -> bool:
    """Whether two boxes [left, top, right, bottom] overlap (touching is not)."""
    return a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5


# -- the traces -------------------------------------------------------------------------


async def open_traces(studio: Studio) -> dict[str, list[Any]]:
    await studio.open_tab("Traces")
    return await studio.source("trace", "root", "agents", "trace_id")


# Installed before a click: records the cells of the table row the pointer presses,
# whichever it is at that instant (the rows may move between finding a row and clicking).
RECORD_CLICKED_ROW = r"""() => {
  window.loomClicked = [];
  document.addEventListener("mousedown", (event) => {
    const path = event.composedPath();  // into Bokeh's shadow roots
    const row = path.find((el) => el.classList && el.classList.contains("tabulator-row"));
    const cells = row ? [...row.querySelectorAll(".tabulator-cell")] : [];
    if (cells.length) {
      window.loomClicked.push(Object.fromEntries(
        cells.map((c) => [c.getAttribute("tabulator-field"), c.textContent.trim()])));
    }
  }, true);
}"""


async def click_a_trace_across_three_agents(studio: Studio) -> str:
    """Click once on a row of the list (one of the first, on screen) whose trace crosses
    three agents or more; the trace that opened, which must be the trace of the row the
    pointer hit.

    The list is read again every 2 s and then holds the 50 newest settled traces, here
    half a second of traffic: the rows move under the pointer at every read (the click
    comes just after one, while the table is not being redrawn). Whichever row the click
    hits, its trace opens (the page names it by its id, not its position).
    """
    before = await studio.source("trace", "trace_id")
    listed = await studio.wait(
        """(first) => {
             const d = loomTest.source(["trace", "agents", "spans", "trace_id"]);
             const wide = (i) => d.agents[i].split(", ").length >= 3;
             return d && d.trace_id[0] !== first && d.trace_id.slice(0, 6).some((_, i) => wide(i))
               ? d : null;
           }""",
        before["trace_id"][0],
    )
    rows = zip(listed["trace"], listed["agents"], strict=True)
    trace = next(t for t, names in list(rows)[:6] if len(names.split(", ")) >= 3)
    await studio.page.evaluate(RECORD_CLICKED_ROW)
    for _ in range(5):  # a click that lands while the table is rebuilt hits no row: again
        x, y = await studio.wait(  # drawn; or the rows moved on already: whichever is first
            "(t) => loomTest.rowCenter('trace', t) || loomTest.rowCenter('trace', null)", trace
        )
        await studio.page.mouse.click(x, y, delay=100)  # pressed as a person does
        try:
            [clicked] = await studio.wait(
                "() => window.loomClicked.length && window.loomClicked", timeout=3000
            )
            break
        except playwright_api.TimeoutError:
            continue
    else:
        raise AssertionError("five clicks on the traces list hit no row")
    title = studio.page.get_by_text(f"trace {clicked['trace']}").first  # the row pressed
    await playwright_api.expect(title).to_be_visible(timeout=WAIT_MS)
    opened = await title.text_content()
    return opened.split()[1]


@dataclass
class Gate:
    """A page's websocket through the test: the server's messages can be held back, so
    that the page keeps showing what the server has already changed."""

    holding: bool = False
    held: list[str | bytes] = field(default_factory=list)
    page: Any = None

    def route(self, socket: Any) -> None:
        self.page = socket
        socket.connect_to_server().on_message(self._from_server)  # the page's go on as sent

    def _from_server(self, message: str | bytes) -> None:
        if self.holding:
            self.held.append(message)
        else:
            self.page.send(message)

    def release(self) -> None:
        self.holding = False
        for message in self.held:
            self.page.send(message)
        self.held.clear()

    def holds(self, pattern: str) -> bool:
        return any(isinstance(m, str) and re.search(pattern, m) for m in self.held)


# Load-sensitive: on a slow machine the gate could close while the list's rows were still to
# be drawn (2 of 3 runs failed so at 48bea5b here, the page's table empty); it now waits for
# a drawn row first, and 1 of 11 runs still timed out under load. One retry, on a fresh page.
@pytest.mark.flaky(reruns=1)
async def test_a_click_opens_the_trace_the_page_shows_though_the_server_listed_newer_ones(
    browser: Any, studio_url: str
) -> None:
    gate = Gate()
    context = await browser.new_context(viewport=VIEWPORT)
    await context.add_init_script(HELPERS)
    page = await context.new_page()
    await page.route_web_socket(re.compile(r"/ws"), gate.route)
    try:
        studio = Studio(page)
        await page.goto(studio_url)
        await studio.wait("() => window.Bokeh && loomTest.rendered()")
        await open_traces(studio)
        # the list is drawn before the gate closes: its rows are the page's, not just its data
        await studio.wait("() => loomTest.rowCenter('trace', null)")
        # the server reads a newer list; the page does not get it, and shows the old one
        gate.holding = True
        await wait_until(lambda: gate.holds(r'"trace_id"'), timeout=WAIT_MS / 1000)
        shown = await studio.source("trace", "trace_id")
        title = page.locator("pre", has_text=re.compile(r"^trace [0-9a-f]{32} "))
        opened = (await title.text_content()).split()[1]  # the trace open now
        row = next(i for i, trace_id in enumerate(shown["trace_id"]) if trace_id != opened)
        await page.evaluate(RECORD_CLICKED_ROW)
        x, y = await studio.wait("(t) => loomTest.rowCenter('trace', t)", shown["trace"][row])
        await page.mouse.click(x, y, delay=100)  # on a row of the list the page shows
        [clicked] = await studio.wait("() => window.loomClicked.length && window.loomClicked")
        assert clicked["trace"] == shown["trace"][row]
        # the server opened a trace (its title is held too); then the page gets it all
        await wait_until(lambda: gate.holds(r"trace [0-9a-f]{32} "), timeout=WAIT_MS / 1000)
        gate.release()
        await playwright_api.expect(title).to_have_text(
            re.compile(f"^trace {shown['trace_id'][row]} "), timeout=WAIT_MS
        )
    finally:
        await context.close()


_TOOLTIP = """() => {
  const find = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (el.classList.contains("bk-tooltip-content") && el.offsetParent !== null
          && el.textContent.includes("duration")) return el.textContent;
      const inner = el.shadowRoot && find(el.shadowRoot);
      if (inner) return inner;
    }
    return null;
  };
  return find(document);
}"""


async def hover_tooltip(studio: Studio, x: float, y: float) -> str:
    """The hover tooltip at ``(x, y)``. Bokeh shows one on a mouse move over a glyph, and a
    redraw (a trace still growing, a busy machine) hides it until the next move: so move,
    wait a little for it, and move again (one pixel off and back) until it shows."""
    deadline = time.monotonic() + WAIT_MS / 1000
    for attempt in itertools.count():
        await studio.page.mouse.move(x, y + attempt % 2)
        try:
            return await studio.wait(_TOOLTIP, timeout=1_000)
        except playwright_api.Error:
            if time.monotonic() > deadline:
                raise
    raise AssertionError("unreachable")


# Load-sensitive: in fresh-clone runs the flamegraph's bars overlapped under the click (fixed:
# any bar under the point) and its hover tooltip never showed (fixed: fresh mouse moves); one
# of ten runs beside two busy CPUs still failed after that, its cause not captured. One retry.
@pytest.mark.flaky(reruns=1)
async def test_traces_tab_lists_traces_and_draws_one_as_agent_lanes(
    studio: Studio, tmp_path: Path
) -> None:
    await open_traces(studio)
    trace_id = await click_a_trace_across_three_agents(studio)
    # listed once settled, a trace is drawn whole: as many spans as the list says
    await studio.wait(
        """(id) => {
             const l = loomTest.source(["trace", "spans", "trace_id"]);
             const d = loomTest.source(["span_id", "lane"]), i = l.trace_id.indexOf(id);
             return d && (i < 0 || d.span_id.length === l.spans[i]);
           }""",
        trace_id,
    )
    lanes = await studio.wait(
        """() => {
             const factors = loomTest.figure("Timeline").y_range.factors;
             return factors.length >= 3 ? factors : null;
           }"""
    )
    spans = await studio.source("span_id", "lane", "agent", "start", "name")
    assert len(lanes) >= 3
    assert set(spans["agent"]) == set(lanes)
    assert {"data", "trend"} <= set(lanes)
    # a click on the widest bar of the flamegraph shows that span's detail
    widths = [right - start for start, right in zip(spans["start"], spans["right"], strict=True)]
    widest = widths.index(max(widths))
    middle = (spans["start"][widest] + spans["right"][widest]) / 2
    x, y = await studio.wait(
        "([x, y]) => loomTest.point('Flamegraph', x, y)", [middle, spans["depth"][widest]]
    )
    # concurrent handlers of one agent share a depth: another bar may cover the same point
    # (a slow machine stretches them); hover and click then show one of the bars under it
    depth = spans["depth"][widest]
    under = [
        index
        for index, (start, right, level) in enumerate(
            zip(spans["start"], spans["right"], spans["depth"], strict=True)
        )
        if level == depth and start <= middle <= right
    ]
    # hovering it shows its whole name, its agent and its duration (its label may be cut)
    tooltip = await hover_tooltip(studio, x, y)
    assert any(spans["name"][i] in tooltip and spans["agent"][i] in tooltip for i in under), tooltip
    await studio.page.mouse.click(x, y)
    ids = [spans["span_id"][i] for i in under]
    shown = re.compile("^(" + "|".join(map(re.escape, ids)) + ")$")
    detail = studio.page.get_by_text(shown).first
    await playwright_api.expect(detail).to_be_visible(timeout=WAIT_MS)
    await playwright_api.expect(studio.page.get_by_text("Attributes", exact=True)).to_be_visible()
    await studio.page.mouse.move(0, 0)  # no tooltip over the picture
    await studio.shot("studio-traces.png", tmp_path)


# -- offline ---------------------------------------------------------------------------


def host(url: str) -> str | None:
    """The host a URL reaches; ``blob:`` URLs name their origin, ``data:`` reach nothing."""
    if url.startswith("data:"):
        return None
    return urlsplit(url.removeprefix("blob:")).hostname


async def test_no_request_leaves_localhost(studio: Studio) -> None:
    await studio.source("agent", "status")
    await open_traces(studio)
    await studio.source("span_id", "lane", "agent", "start")
    # the tabs opened later make their components then: their stylesheets too stay local
    for tab in ("Topics", "Editor", "Builder", "History"):
        await studio.page.get_by_text(tab, exact=True).first.click()
        await studio.page.wait_for_timeout(1500)
    hosts = {host(url) for url in studio.urls} - {None}
    assert hosts <= LOCAL_HOSTS, [u for u in studio.urls if host(u) not in LOCAL_HOSTS]
    assert any(url.startswith("ws://127.0.0.1") for url in studio.urls)
    assert any("/static/js/bokeh" in url for url in studio.urls)  # served by the studio
    assert studio.failed == []
    assert studio.errors == []
