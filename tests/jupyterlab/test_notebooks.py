"""The tutorial notebooks, run in a real JupyterLab by Debian's chromium, as a user runs them.

One ``jupyter lab`` serves a temporary folder holding copies of the repo's notebooks (and a
project folder for the docs' snippet); its kernels import this repo (``PYTHONPATH``) and
write their temporary projects under that folder (``TMPDIR``), never into the repo. Each
test opens a notebook, runs all its cells from the Run menu and then reads what a user
would see: the cells' outputs (no traceback), the Bokeh models of the inline studio (each
output has its own Bokeh document: ``Bokeh.documents``), the console (no error) and the
network (no request leaves the machine).

Screenshots go to the module's temporary folder; with ``LOOM_SCREENSHOTS=docs/img`` the
one the docs show is written there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import pytest_asyncio

from tests.support.browser import CHROMIUM, launch_chromium
from tests.support.jupyterlab import WATCH_MESSAGES_JS, Lab, LabPage, publish, running_lab

playwright_api = pytest.importorskip("playwright.async_api")

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium: `make browser`"),
]

NOTEBOOKS = ("01_agents_on_the_bus.ipynb", "03_studio_inline.ipynb", "04_topics_and_editor.ipynb")
WAIT_MS = 60_000  # the bound of every wait in the page
VIEWPORT = {"width": 1400, "height": 1000}
SNIPPET = "docs-snippet"  # a project folder with the docs' snippet as a notebook

# Reads the Bokeh models of every output of the page: the first ColumnDataSource (of any
# output's document) holding all the given columns, as plain arrays.
SOURCE_JS = """
(columns) => {
  for (const doc of (window.Bokeh && Bokeh.documents) || []) {
    for (const model of doc.all_models) {
      if (model.type === "ColumnDataSource" && columns.every((c) => c in model.data)) {
        return Object.fromEntries(columns.map((c) => [c, Array.from(model.data[c])]));
      }
    }
  }
  return null;
}
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("notebooks")
    for name in NOTEBOOKS:
        shutil.copy(REPO / "notebooks" / name, root / name)
    _docs_snippet_notebook(root / SNIPPET)
    scratch = root / "tmp"  # the kernels' temporary folders (the notebooks' projects)
    scratch.mkdir()
    with running_lab(root, env={"TMPDIR": str(scratch)}) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    async with launch_chromium() as chromium:
        yield chromium


@pytest_asyncio.fixture(loop_scope="module")
async def open_notebook(browser: Any, lab: Lab) -> AsyncIterator[Callable[[str], Any]]:
    """Opens a notebook in a fresh page, its kernel ready; shuts that kernel down after the
    test (a live output would otherwise go on refreshing in it)."""
    context = await browser.new_context(viewport=VIEWPORT)
    pages: list[LabPage] = []

    async def open_(path: str) -> LabPage:
        page = await LabPage.open(context, lab, path)
        pages.append(page)
        await page.wait_for_kernel()
        return page

    try:
        yield open_
    finally:
        for page in pages:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    page.page.evaluate(
                        "() => jupyterapp.shell.currentWidget.sessionContext.shutdown()"
                    ),
                    timeout=20,
                )
        await context.close()


def _docs_snippet_notebook(folder: Path) -> None:
    """The python blocks of docs/studio.md's inline section, verbatim, one cell each, in a
    project folder of their own (an embedded bus: nothing else joins it)."""
    section = (REPO / "docs" / "studio.md").read_text().split("## Inline, in a notebook", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert blocks, "docs/studio.md: no python block under '## Inline, in a notebook'"
    folder.mkdir()
    (folder / "loom.toml").write_text('[bus]\nmode = "embedded"\n')
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.cells = [nbformat.v4.new_code_cell(block.strip()) for block in blocks]
    nbformat.write(notebook, folder / "snippet.ipynb")


async def _source(page: LabPage, columns: list[str], condition: str) -> dict[str, list[Any]]:
    """Wait until the page holds a source with ``columns`` for which ``condition`` (a JS
    expression of its data ``d``) holds; its data."""
    predicate = (
        f"(columns) => {{ const d = ({SOURCE_JS})(columns); return d && ({condition}) && d; }}"
    )
    handle = await page.page.wait_for_function(predicate, arg=columns, timeout=WAIT_MS)
    return await handle.json_value()


def _assert_clean(page: LabPage, outputs: list[str]) -> None:
    tracebacks = [out for out in outputs if "Traceback" in out]
    assert tracebacks == [], tracebacks[0][-3000:]
    assert page.errors == [], page.errors
    assert page.console == [], page.console
    assert page.outside() == [], page.outside()


@pytest.mark.timeout(120)
async def test_agents_on_the_bus_runs_clean_in_jupyterlab(open_notebook: Any) -> None:
    page = await open_notebook("01_agents_on_the_bus.ipynb")
    assert await page.run_all(), "a cell failed"
    outputs = await page.cell_outputs()
    assert "40 prices arrived" in "".join(outputs)
    assert "discovery file left: False" in outputs[-1]
    _assert_clean(page, outputs)


@pytest.mark.timeout(150)
async def test_studio_inline_dashboard_updates_live_in_jupyterlab(
    open_notebook: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    page = await open_notebook("03_studio_inline.ipynb")
    run = asyncio.ensure_future(page.run_all())
    try:
        # the agents start after the dashboard is shown: rows handled come from its refresh
        agents = await _source(page, ["agent", "status", "handled"], "d.handled.some((n) => n > 0)")
        assert {"analyst", "auditor", "risk", "ticker"} <= set(agents["agent"])
        # the QoS plots move: one point a second streamed into their source
        first = await _source(page, ["t", "events", "p99_ms"], "d.t.length >= 2")
        later = await _source(page, ["t", "events", "p99_ms"], f"d.t.length > {len(first['t'])}")
        assert later["t"][: len(first["t"])] == first["t"]
        assert max(later["events"]) > 0
        await _screenshot(page, tmp_path_factory.mktemp("shots") / "notebook-dashboard.png")
        delivery = await _source(page, ["delivered", "loss %"], "d.delivered.some((n) => n > 0)")
        assert len(delivery["delivered"]) == len(agents["agent"])
        assert await asyncio.wait_for(run, timeout=120), "a cell failed"
    finally:
        run.cancel()
    # the page got the changes in the order they were made: the plot's points, and the
    # topology's edges drawn from the nodes' current places
    history = await _source(page, ["t", "events", "p99_ms"], "true")
    assert history["t"] == sorted(set(history["t"]))
    nodes = await _source(page, ["name", "marker", "x", "y"], "d.name.length > 0")
    edges = await _source(page, ["source", "target", "x0", "y0"], "d.source.length > 0")
    place = {name: (x, y) for name, x, y in zip(nodes["name"], nodes["x"], nodes["y"], strict=True)}
    drawn = zip(edges["source"], edges["x0"], edges["y0"], strict=True)
    assert [(name, (x, y)) for name, x, y in drawn] == [
        (name, place[name]) for name in edges["source"]
    ]
    outputs = await page.cell_outputs()
    _assert_clean(page, outputs)
    # every cell that printed in the saved notebook printed here, in its own output
    saved = nbformat.read(REPO / "notebooks" / "03_studio_inline.ipynb", as_version=4)
    printed = [bool(cell.outputs) for cell in saved.cells if cell.cell_type == "code"]
    silent = [
        i for i, (out, shows) in enumerate(zip(outputs, printed, strict=True)) if shows and not out
    ]
    assert silent == [], f"code cells {silent} printed nothing"
    assert "dashboard refreshing: False" in outputs[-1]


@pytest.mark.timeout(150)
async def test_topics_and_editor_run_clean_and_the_editor_highlights_python(
    open_notebook: Any,
) -> None:
    page = await open_notebook("04_topics_and_editor.ipynb")
    run = asyncio.ensure_future(page.run_all())
    try:
        # while it runs: the explorer's tree comes to the page from its refresh, and Ace
        # draws the agent's code as Python (its mode embedded: loom_studio/ace_modules.py)
        await _source(page, ["topic", "events", "path", "kind"], "d.path.includes('quote.request')")
        keywords = page.page.locator(".ace_editor .ace_keyword", has_text="class")
        await playwright_api.expect(keywords.first).to_be_visible(timeout=WAIT_MS)
        assert await asyncio.wait_for(run, timeout=120), "a cell failed"
    finally:
        run.cancel()
    outputs = await page.cell_outputs()
    assert "reloaded: {'desk': 2}" in "".join(outputs)
    _assert_clean(page, outputs)
    assert "closed" in outputs[-1]


async def _screenshot(page: LabPage, path: Path) -> None:
    """The dashboard's cell at the top of the notebook, its output drawn; then the page."""
    cell = page.page.locator(".jp-CodeCell", has_text="loom_studio.Dashboard(runtime=rt)")
    await cell.evaluate(
        """(cell) => {
             cell.scrollIntoView({block: "start"});
             cell.closest(".jp-WindowedPanel-outer").scrollBy(0, -50);  // from under the toolbar
           }"""
    )
    await page.page.wait_for_function(
        """() => [...Bokeh.index.roots].some((view) => {
             const box = view.el && view.el.getBoundingClientRect();  // a CommManager has no el
             return box && box.height > 300 && box.top < innerHeight && box.bottom > 0;
           })""",
        timeout=WAIT_MS,
    )
    await page.screenshot(path)
    publish(path)


@pytest.mark.timeout(150)
# Known, not understood: once under a busy loop on the 2 cores (of ~10 runs), the last cell
# (it waits for the refresh to stop while the page closes the views it cleared) ended with
# no output at all in the page. The failure prints where the kernel's last outputs went; the
# test gets one more try.
@pytest.mark.flaky(reruns=1)
async def test_docs_snippet_shows_the_studio_and_clearing_it_stops_the_refresh(
    open_notebook: Any,
) -> None:
    page = await open_notebook(f"{SNIPPET}/snippet.ipynb")  # no pn.extension() in it
    assert await page.run_all(), "a cell failed"
    # the dashboard (its agents table) and the traces view (its list) are on the page
    await _source(page, ["agent", "status", "handled"], "true")
    await _source(page, ["trace_id", "root"], "true")
    assert await _run_cell(page, SHOWN + "print(dashboard.running, traces.running)") == (
        "True True\n"
    )
    _assert_clean(page, await page.cell_outputs())
    await page.page.evaluate("() => jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    stopped = await _run_cell(page, STOPPED)
    assert stopped == "refreshing: False False - refresh tasks: 0\n", await page.recent_messages()
    _assert_clean(page, [])


SHOWN = """\
import asyncio

shown = {type(value).__name__: value for value in Out.values()}  # the cells' results
dashboard, traces = shown["Dashboard"], shown["Traces"]
"""
STOPPED = (
    SHOWN
    + """\
def refreshes(task):  # a periodic callback of Panel's calling one of them
    frame = getattr(task.get_coro(), "cr_frame", None)
    callback = getattr(frame and frame.f_locals.get("self"), "callback", None)
    return getattr(callback, "__self__", None) in (dashboard, traces)


# the page tells the kernel on Panel's cleanup comm, and a refresh under way when it stops
# ends first: give it 10 s
for _ in range(100):
    tasks = sum(map(refreshes, asyncio.all_tasks()))
    if not (dashboard.running or traces.running or tasks):
        break
    await asyncio.sleep(0.1)
print("refreshing:", dashboard.running, traces.running, "- refresh tasks:", tasks)
"""
)


async def _run_cell(page: LabPage, source: str) -> str:
    """Append a cell with ``source`` to the open notebook, run it, return its output."""
    await page.page.evaluate(WATCH_MESSAGES_JS)
    return await asyncio.wait_for(
        page.page.evaluate(
            """async (source) => {
                 const panel = jupyterapp.shell.currentWidget;
                 const notebook = panel.content;
                 notebook.activeCellIndex = notebook.widgets.length - 1;
                 await jupyterapp.commands.execute('notebook:insert-cell-below');
                 notebook.activeCell.model.sharedModel.setSource(source);
                 await jupyterapp.commands.execute('notebook:run-cell');
                 const outputs = notebook.activeCell.model.outputs;
                 return [...Array(outputs.length).keys()]
                   .map((i) => outputs.get(i).toJSON())
                   .map((o) => [o.text || o.ename + ': ' + o.evalue].flat().join('')).join('');
               }""",
            source,
        ),
        timeout=60,
    )
