"""A real ``jupyter lab`` for browser tests, and what a test reads from its pages.

:func:`running_lab` starts JupyterLab as a user would (``python -m jupyter lab``) in a
folder of the test's, on a free port with a token of its own and a private workspace,
and stops it afterwards. :class:`LabPage` wraps a Playwright page of it: it records every
request, websocket, failed request, page error and console error from the first one, and
knows the few JupyterLab moves tests need (open a notebook, wait for its kernel, run all
cells, read the cell outputs), through ``window.jupyterapp`` where the DOM would only let
it guess (Lab exposes it with ``expose_app_in_browser``, as for its own galata tests).

Facts this relies on (docs/FACTS of the project): as root, ``--allow-root``; open
``/lab?reset`` so a workspace restored from elsewhere does not hide the launcher; Lab
reaches the launcher in 6 to 11 s here; Playwright's ``get_by_text`` pierces shadow roots.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.conftest import PYTHON, free_port, python_env

__all__ = ["LOCAL_HOSTS", "Lab", "LabPage", "host", "running_lab"]

LOCAL_HOSTS = {"127.0.0.1", "localhost"}
STARTUP = 90.0  # seconds for the server to answer


@dataclass
class Lab:
    """A running JupyterLab server."""

    url: str  # http://127.0.0.1:<port>
    token: str
    root: Path
    log: Path
    process: subprocess.Popen[bytes]

    def page_url(self, path: str = "") -> str:
        """``/lab`` (or ``/lab/tree/<path>``) with a reset workspace and the token."""
        where = f"/lab/tree/{path}" if path else "/lab"
        return f"{self.url}{where}?reset&token={self.token}"

    def api(self, path: str) -> Any:
        """GET a server endpoint (JSON) with the token."""
        request = urllib.request.Request(
            f"{self.url}{path}", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def running_lab(root: Path, *, env: dict[str, str] | None = None) -> Iterator[Lab]:
    """``jupyter lab`` serving ``root`` on 127.0.0.1 and a free port, until the block ends."""
    port, token = free_port(), secrets.token_hex(16)
    settings = root / ".lab"
    (settings / "workspaces").mkdir(parents=True, exist_ok=True)
    # no "get notified about Jupyter news?" toast over the pages (and their screenshots): the
    # user's settings, under JUPYTER_CONFIG_DIR below, say no
    notification = settings / "config/lab/user-settings/@jupyterlab/apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    log = root / "jupyter-lab.log"
    environment = {**python_env(), **(env or {}), "JUPYTER_CONFIG_DIR": str(settings / "config")}
    environment.pop("LOOM_CONFIG", None)
    command = [
        PYTHON, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
        "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.workspaces_dir={settings / 'workspaces'}",
        "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        # `window.jupyterapp`, as Lab's own browser tests (galata) have it: a test waits on
        # the notebook's kernel and on its commands instead of guessing from the DOM
        "--LabApp.expose_app_in_browser=True",
    ]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=root, env=environment, stdout=out, stderr=subprocess.STDOUT
        )
    lab = Lab(f"http://127.0.0.1:{port}", token, root, log, process)
    try:
        _wait_until_up(lab)
        yield lab
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_until_up(lab: Lab) -> None:
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise AssertionError(f"jupyter lab exited ({lab.process.returncode}):\n{lab.output()}")
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
            if lab.api("/api/status") is not None:
                return
        time.sleep(0.2)
    raise AssertionError(f"jupyter lab did not answer within {STARTUP:g} s:\n{lab.output()}")


def host(url: str) -> str | None:
    """The host a URL reaches; ``blob:`` URLs name their origin, ``data:`` reach nothing."""
    if url.startswith(("data:", "about:")):
        return None
    return urlsplit(url.removeprefix("blob:")).hostname


# Lab handles a kernel's messages one at a time, each after the last one's handler settled
# (its comm handlers are awaited): a handler that never settles holds every later message,
# execute_reply included. This wraps the handler to name the messages still in hand.
WATCH_MESSAGES_JS = """
() => {
  const kernel = jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  if (kernel.loomWatched) return;
  kernel.loomWatched = true;
  window.loomMessages = { pending: new Map(), count: 0, requests: new Map(), outputs: [] };
  // per execute_request sent: whether its reply and its "idle" status came back
  kernel.anyMessage.connect((_, { msg, direction }) => {
    const type = msg.header.msg_type;
    if (direction === 'send' && type === 'execute_request') {
      loomMessages.requests.set(msg.header.msg_id, {
        code: msg.content.code.slice(0, 40), reply: false, idle: false, busy: false, idles: 0 });
    }
    if (direction === 'recv' && ['stream', 'error', 'execute_result'].includes(type)) {
      // the last outputs the kernel sent, with the request they name: a cell whose output
      // is missing shows whether it went to another request
      loomMessages.outputs.push({ type, parent: msg.parent_header.msg_id,
        parentType: msg.parent_header.msg_type,
        text: JSON.stringify(msg.content.text || msg.content.evalue || '').slice(0, 80) });
      loomMessages.outputs.splice(0, loomMessages.outputs.length - 20);
    }
    const request = direction === 'recv' && loomMessages.requests.get(msg.parent_header.msg_id);
    if (!request) return;
    if (type === 'execute_reply') request.reply = msg.content.status;
    if (type === 'status') request[msg.content.execution_state] = true;
    if (type === 'status' && msg.content.execution_state === 'idle') request.idles += 1;
  });
  const handle = kernel._handleMessage.bind(kernel);
  kernel._handleMessage = async (msg) => {
    const id = ++loomMessages.count;
    loomMessages.pending.set(id, {
      n: id, type: msg.header.msg_type, channel: msg.channel, at: new Date().toISOString(),
      content: JSON.stringify(msg.content).slice(0, 400),
    });
    try { return await handle(msg); } finally { loomMessages.pending.delete(id); }
  };
}
"""


@dataclass
class LabPage:
    """One browser page of a :class:`Lab`, and everything it asked for or complained about."""

    page: Any
    lab: Lab
    urls: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # uncaught page errors
    console: list[str] = field(default_factory=list)  # console.error messages

    @classmethod
    async def open(cls, context: Any, lab: Lab, path: str = "") -> LabPage:
        page = await context.new_page()
        session = cls(page, lab)
        page.on("request", lambda request: session.urls.append(request.url))
        page.on("websocket", lambda socket: session.urls.append(socket.url))
        page.on("requestfailed", lambda request: session.failed.append(request.url))
        page.on("pageerror", lambda error: session.errors.append(str(error)))
        page.on(
            "console",
            lambda message: (
                session.console.append(message.text) if message.type == "error" else None
            ),
        )
        await page.goto(lab.page_url(path))
        await page.wait_for_selector("#jp-main-dock-panel", timeout=60_000)
        return session

    def outside(self) -> list[str]:
        """Every URL the page asked for that is not on this machine."""
        return [url for url in self.urls if host(url) not in LOCAL_HOSTS | {None}]

    async def command(self, label: str) -> None:
        """Run a command by its label from the command palette (focus may be in an iframe,
        where Lab's shortcuts do not reach: open the palette from the View menu)."""
        await self.page.get_by_role("menuitem", name="View", exact=True).click()
        await self.page.get_by_text("Activate Command Palette", exact=True).click()
        palette = self.page.locator(".lm-CommandPalette-input")
        await palette.fill(label)
        await palette.press("Enter")

    async def wait_for_kernel(self, timeout_ms: int = 60_000) -> None:
        """Wait until the open notebook's kernel is connected and idle. Lab may replace the
        first kernel of a session while it opens (cells run on the first one are lost)."""
        await self.page.wait_for_function(
            """() => {
                 const widget = window.jupyterapp && jupyterapp.shell.currentWidget;
                 const context = widget && widget.sessionContext;
                 const kernel = context && context.session && context.session.kernel;
                 return !!kernel && context.isReady && !context.isRestarting
                   && kernel.connectionStatus === 'connected' && kernel.status === 'idle';
               }""",
            timeout=timeout_ms,
        )

    async def run_all(self, timeout_ms: int = 120_000) -> bool:
        """Run every cell of the open notebook from the Run menu, as a user would, and wait
        until the run ends: every cell ran, or one failed (Lab stops there). Returns whether
        every cell ran without an error."""
        await self.wait_for_kernel()
        # the command's own promise says when the run ends (a DOM prompt can read "done"
        # before the run even started)
        await self.page.evaluate(
            """() => {
                 window.loomRunAll = null;
                 const watch = (_, call) => {
                   if (call.id !== 'notebook:run-all-cells') return;
                   jupyterapp.commands.commandExecuted.disconnect(watch);
                   Promise.resolve(call.result).then(
                     (ok) => { window.loomRunAll = { ok: ok !== false }; },
                     (error) => { window.loomRunAll = { ok: false, error: String(error) }; });
                 };
                 jupyterapp.commands.commandExecuted.connect(watch);
               }"""
        )
        await self.page.evaluate(WATCH_MESSAGES_JS)
        await self.page.get_by_role("menuitem", name="Run", exact=True).click()
        await self.page.get_by_text("Run All Cells", exact=True).click()
        try:
            await self.page.wait_for_function(
                "() => window.loomRunAll !== null", timeout=timeout_ms
            )
        except PlaywrightTimeout:
            raise AssertionError(f"Run All did not end: {await self.running_cell()}") from None
        # the run's promise ends with the last execute_reply (shell channel); the last cell's
        # outputs come on iopub, before its "idle" status: wait for that, then they are in
        await self.wait_for_kernel(timeout_ms)
        return bool(await self.page.evaluate("() => window.loomRunAll.ok"))

    async def running_cell(self) -> str:
        """Which code cell the kernel is on (its prompt reads ``[*]``), with its source's
        first line and its outputs so far: what a run that does not end is waiting for."""
        cells = await self.page.evaluate(
            """() => [...document.querySelectorAll('.jp-CodeCell')].map((cell) => ({
                 prompt: cell.querySelector('.jp-InputPrompt')?.textContent || '',
                 source: (cell.querySelector('.cm-content')?.innerText || '').slice(0, 120),
               }))"""
        )
        outputs = await self.cell_outputs()
        busy = [(i, c) for i, c in enumerate(cells) if "*" in c["prompt"]]
        if not busy:
            return f"no cell shows [*]; prompts: {[c['prompt'] for c in cells]}"
        index, cell = busy[0]
        stuck = await self.page.evaluate(
            "() => window.loomMessages && [...loomMessages.pending.values()]"
        )
        unanswered = await self.page.evaluate(
            """() => window.loomMessages && [...loomMessages.requests.values()]
                 .filter((r) => !(r.reply && r.idle) || r.idles > 1)"""
        )
        kernels = self.lab.api("/api/kernels")
        return (
            f"code cell {index} ({cell['prompt']}) {cell['source']!r} is still running; "
            f"its outputs so far: {outputs[index][-500:] if index < len(outputs) else ''!r}; "
            f"kernel messages the page has not finished handling: {stuck}; "
            f"execute requests without their reply and idle status, or with two idle: "
            f"{unanswered}; "
            f"the server's kernels: {[(k['id'][:8], k['execution_state']) for k in kernels]}; "
            f"page errors: {self.errors[-3:]}; console errors: {self.console[-3:]}; "
            f"the server's log ends: {self.lab.output()[-1500:]!r}"
        )

    async def recent_messages(self) -> str:
        """The kernel's last outputs and execute requests as the page saw them (once
        :data:`WATCH_MESSAGES_JS` runs in it): where an output that did not show went."""
        seen = await self.page.evaluate(
            """() => window.loomMessages && {
                 outputs: loomMessages.outputs,
                 requests: [...loomMessages.requests.entries()].slice(-5),
               }"""
        )
        return f"the page's last kernel outputs and requests: {seen}"

    async def cell_outputs(self) -> list[str]:
        """The text of every code cell's outputs, in order: streams, errors with their
        traceback (ANSI colours removed), the ``text/plain`` of results and displays, or the
        text of their HTML when they have no plain text (Panel writes the errors of its
        widgets' callbacks into an HTML output of the cell).

        Read from the notebook's model, not the page: Lab skips rendering cells out of
        view (``content-visibility``), whose ``innerText`` is then empty."""
        return await self.page.evaluate(
            """() => {
                 const html = (markup) => {
                   const body = new DOMParser().parseFromString(markup, 'text/html').body;
                   body.querySelectorAll('script, style').forEach((node) => node.remove());
                   return body.textContent;
                 };
                 const text = (output) => {
                   const json = output.toJSON();
                   const data = json.data || {};
                   const value = json.output_type === 'stream' ? json.text
                     : json.output_type === 'error'
                       ? [`${json.ename}: ${json.evalue}`, ...(json.traceback || [])].join('\\n')
                       : data['text/plain'] || html([data['text/html'] || ''].flat().join(''));
                   return (Array.isArray(value) ? value.join('') : String(value))
                     .replace(/\\u001b\\[[0-9;]*m/g, '');
                 };
                 const cells = jupyterapp.shell.currentWidget.content.model.cells;
                 return [...cells].filter((cell) => cell.type === 'code').map((cell) =>
                   [...Array(cell.outputs.length).keys()]
                     .map((i) => text(cell.outputs.get(i))).join(''));
               }"""
        )

    async def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=path)


def publish(screenshot: Path) -> None:
    """Copy a screenshot to ``$LOOM_SCREENSHOTS`` (``docs/img`` for the docs), when set."""
    target = os.environ.get("LOOM_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        (Path(target) / screenshot.name).write_bytes(screenshot.read_bytes())
