"""The studio's components inline in a notebook cell: what they load, and how they stay live.

Showing a :class:`~loom_studio.Dashboard` or :class:`~loom_studio.Traces` in a cell (their
``_repr_mimebundle_``, from :class:`InlineViewer`):

1. loads Panel's notebook extension in the kernel when it is not loaded yet, with the
   widgets the studio uses (``pn.extension("tabulator", "codeeditor", inline=True)``):
   BokehJS, Panel, Tabulator and Ace come embedded in the cell's output, nothing is fetched
   (a component adds scripts of its own with :meth:`InlineViewer.output_script`);
2. gives every stylesheet Panel links (its theme and widget CSS, which Panel otherwise takes
   from cdn.holoviz.org in a notebook, on the first render as on every later update of a
   pane) as a ``data:`` URL read from the installed package;
3. makes the page send the kernel only the changes made in the page. Panel's notebook
   transport also sends back every change it has just applied from the kernel; such an echo
   arrives late, and a table whose rows changed meanwhile takes it for an edit with the old
   rows: ``ValueError: Must have equal len keys and value`` in Tabulator, after which
   Panel's document of that output is left unheld and the output never updates again;
4. holds a refresh's changes in the output's document until the page has connected to the
   output (:meth:`InlineViewer.updating_page`): Panel retries each message sent before that
   on its own timer, and they reach the page out of order (a plot's points, a table's rows,
   a topology's nodes from an older layout than its edges);
5. guards the kernel's current request against ipykernel 7's restore of an ended one
   (:mod:`.kernel_parent`): otherwise a Run All can hang on a cell shown as running;
6. stops the component's periodic refresh once its last output is gone (cleared, or its
   cell run again): the page tells the kernel, as Panel's JupyterLab extension means to;
   a kernel restart ends it with the process.

Everything here leans on a few Panel internals (listed where used); the browser tests in
``tests/jupyterlab/test_notebooks.py`` check the result in a real JupyterLab.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import mimetypes
import re
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import panel as pn
from bokeh.models import ImportedStyleSheet
from panel.config import panel_extension
from panel.io.notebook import EXEC_MIME, block_comm, push_on_root
from panel.io.resources import CDN_DIST, DIST_DIR, LOCAL_DIST
from panel.io.state import state

from .kernel_parent import guard_shell_parent

__all__ = ["EXTENSIONS", "InlineViewer", "keep_stylesheets_inline", "load_extension"]

# the Panel extensions the studio's components use: the tables, and the editor's Ace (loaded
# with the first component: an extension added to a page later is not there when needed)
EXTENSIONS = ("tabulator", "codeeditor")

# Runs in the page with each output, before Panel's own script. Two things Panel's notebook
# machinery means to do but does not, here:
# - Panel's CommManager forwards every change of the page's document to the kernel, those
#   it applied from the kernel included (BokehJS marks them `sync: false`; Bokeh's own
#   server client skips them): skip them too (once per page);
# - when JupyterLab disposes an output, its pyviz extension clears the output's document and
#   should tell the kernel on the "hv-extension-comm" comm, but never opens that comm (its
#   `comm` getter tests `null` against an `undefined` field): open one per output, and tell.
OUTPUT_JS = """
(function loomInline(ref, tries) {
  const panel = window.Bokeh && window.Bokeh.Panel;
  const manager = panel && panel.CommManager && panel.CommManager.prototype;
  if (manager && !manager.loomSyncOnly) {
    const forward = manager._document_changed;
    manager._document_changed = function (event) {
      if (event.sync === false) return;  // applied from the kernel: the kernel has it
      return forward.call(this, event);
    };
    manager.loomSyncOnly = true;
  }
  const kernel = window.PyViz && window.PyViz.kernels && window.PyViz.kernels[ref];
  const view = window.Bokeh && window.Bokeh.index && window.Bokeh.index[ref];
  if (!manager || !kernel || !view) {  // the extension, the output or its kernel not there yet
    if (tries > 0) setTimeout(() => loomInline(ref, tries - 1), 50);
    return;
  }
  const comm = kernel.connectToComm("hv-extension-comm");
  comm.open({});
  const doc = view.model.document;
  const removed = () => {
    if (doc.roots().length === 0) {  // the output is gone
      doc.remove_on_change(removed);
      comm.send({event_type: "delete", id: ref});
    }
  };
  doc.on_change(removed);
})(%s, 400);
"""

_shown: dict[str, weakref.ref[InlineViewer]] = {}  # output root id -> the component in it


def load_extension() -> None:
    """Load Panel's notebook extension in this kernel with :data:`EXTENSIONS`, unless done.

    The first load embeds Panel's JavaScript in the output (``inline=True``). When the
    notebook already loaded Panel without one of :data:`EXTENSIONS`, only that one is
    added, with the notebook's own choice of resources. Outside a Jupyter kernel
    (a script, a served page) it does nothing.
    """
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return
    guard_shell_parent(shell.kernel)  # the page's comm messages must not stall a Run All
    # Panel keeps what it loaded in these two class attributes (its own display path
    # reads `_loaded` the same way)
    missing = [name for name in EXTENSIONS if name not in panel_extension._loaded_extensions]
    if not panel_extension._loaded:
        pn.extension(*EXTENSIONS, inline=True)
    elif missing:
        pn.extension(*missing)


class InlineViewer(pn.viewable.Viewer):
    """A studio component that shows itself inline: see the module's docstring.

    Subclasses refresh themselves while shown and implement ``stop()``.
    """

    def output_script(self) -> str:
        """JavaScript of the component's own that its output runs (none by default)."""
        return ""

    def stop(self) -> None:
        raise NotImplementedError

    async def connected(self, timeout: float = 10.0) -> bool:
        """Wait until the page has connected every output showing this component (True),
        or ``timeout`` seconds (False: no front end connects, as under nbval). In
        JupyterLab, changing a component just shown, before its output is connected, can
        lose the output's updates: ``await component.connected()`` in the next cell first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            outputs = [ref for ref, owner in list(_shown.items()) if owner() is self]
            if outputs and all(_connected(ref) for ref in outputs):
                return True
            await asyncio.sleep(0.05)
        return False

    @contextlib.contextmanager
    def updating_page(self) -> Iterator[None]:
        """Around a refresh: its changes go to the page once every output showing this
        component is connected; until then they wait in the outputs' documents, in order,
        and the first refresh after that sends them. (An output no page ever connects, as
        in a notebook run without a browser, keeps them: its kernel is short-lived.) Nested
        in another (a change that sets off another), it leaves the sending to the outer one."""
        if getattr(self, "_updating_page", False):  # inside another: that one sends it all
            yield
            return
        outputs = [ref for ref, owner in list(_shown.items()) if owner() is self]
        self._updating_page = True
        try:
            if not all(_connected(ref) for ref in outputs):
                with block_comm():  # Panel's switch: a push leaves its changes in the document
                    yield
                return
            yield
        finally:
            self._updating_page = False
        for ref in outputs:
            push_on_root(ref)  # what waited in the output's document, if anything

    def _repr_mimebundle_(
        self, include: Any = None, exclude: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        load_extension()
        view = pn.panel(self)
        # `hooks` run on the output's root model before Panel sends it (Viewable._hooks)
        if _inline_stylesheets not in view._hooks:
            view._hooks.append(_inline_stylesheets)
        shown = view._repr_mimebundle_(include, exclude)
        if not shown:
            return shown
        data, metadata = shown
        ref = metadata.get(EXEC_MIME, {}).get("id")
        if ref is None or ref not in state._views:  # not Panel's comm output (VS Code's)
            return shown
        keep_stylesheets_inline(state._views[ref][2])
        _shown[ref] = weakref.ref(self)
        script = OUTPUT_JS % json.dumps(ref)
        data["text/html"] = f"<script>{script}{self.output_script()}</script>{data['text/html']}"
        return data, metadata


def _output_removed(ref: str) -> None:
    """An output is gone (the page said so, see :data:`OUTPUT_JS`; Panel's own delete
    action has freed its models): stop its component if it was the component's last."""
    owner = _shown.pop(ref, None)
    component = owner() if owner is not None else None
    if component is not None and all(other() is not component for other in _shown.values()):
        component.stop()


pn.extension.add_delete_action(_output_removed)


def _connected(ref: str) -> bool:
    """Whether the page has opened the comm of this output (Panel's view of it: the output's
    entry in ``state._views``, its comm's ``_comm``); a removed output counts as connected."""
    shown = state._views.get(ref)
    return shown is None or getattr(shown[3], "_comm", None) is not None


# -- stylesheets as data: URLs ---------------------------------------------------------------


def _inline_stylesheets(viewable: Any, root: Any, changed: Any = None, old: Any = None) -> None:
    """A preprocessing hook: the output's stylesheets, before they are sent, as data: URLs.

    Changed in place, so Panel's per-document cache (which hands the same objects to later
    updates) holds the inline ones."""
    for sheet in root.select({"type": ImportedStyleSheet}):
        _make_inline(sheet)


def keep_stylesheets_inline(document: Any) -> None:
    """Every stylesheet Panel creates later for this document's updates: inline too.

    Panel looks them up by URL in ``state._stylesheets[document]`` and files the new ones
    there; the same file may be asked for by its CDN or its local URL."""
    cache = state._stylesheets.get(document)
    if document is not None and not isinstance(cache, _InlineStylesheets):
        state._stylesheets[document] = _InlineStylesheets(cache or {})


class _InlineStylesheets(dict[str, Any]):
    """Panel's stylesheet cache of one document, by file, its stylesheets inline."""

    def __init__(self, cache: dict[str, Any]):
        super().__init__()
        for url, sheet in cache.items():
            self[url] = sheet

    def __contains__(self, url: object) -> bool:
        return super().__contains__(_key(url))

    def __getitem__(self, url: str) -> Any:
        return super().__getitem__(_key(url))

    def get(self, url: str, default: Any = None) -> Any:
        return super().get(_key(url), default)

    def __setitem__(self, url: str, sheet: Any) -> None:
        if isinstance(sheet, ImportedStyleSheet):
            _make_inline(sheet)
        super().__setitem__(_key(url), sheet)


def _key(url: object) -> object:
    path = _dist_file(url) if isinstance(url, str) else None
    return f"panel-dist:{path}" if path is not None else url


def _make_inline(sheet: ImportedStyleSheet) -> None:
    path = _dist_file(sheet.url)
    if path is not None:
        sheet.url = _data_url(path)


def _dist_file(url: str) -> Path | None:
    """The file of Panel's ``dist`` folder a stylesheet URL points at, if any."""
    if url.startswith("data:"):
        return None
    path = url.split("?", 1)[0]
    for prefix in (CDN_DIST, LOCAL_DIST):
        if prefix in path:
            candidate = (DIST_DIR / path.split(prefix, 1)[1]).resolve()
            if candidate.is_file() and DIST_DIR.resolve() in candidate.parents:
                return candidate
    return None


_ASSET = re.compile(r"""url\((['"]?)(?!data:|https?:|/)([^'")]+)\1\)""")


@functools.cache
def _data_url(path: Path) -> str:
    """A CSS file as a data: URL, the files it refers to (spinner images) inline too."""

    def asset(match: re.Match[str]) -> str:
        target = (path.parent / match.group(2)).resolve()
        if not target.is_file():
            return match.group(0)
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return f"url('{_encode(target.read_bytes(), kind)}')"

    css = _ASSET.sub(asset, path.read_text(encoding="utf-8"))
    return _encode(css.encode(), "text/css")


def _encode(content: bytes, kind: str) -> str:
    return f"data:{kind};base64,{base64.b64encode(content).decode()}"
