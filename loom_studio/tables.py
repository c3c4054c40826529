"""Clicks on a table whose rows move: the browser names the clicked row by its key.

A Tabulator reports a click (and a selection) by the row's position, and the server reads
the row at that position in *its* data. When the data changes under the user (the newest
row first: each refresh pushes the others down), the page may still show the previous
data when the user clicks, and the position then names a neighbour. And a live table is
redrawn at each refresh: a press and its release often fall on either side of a redraw,
and the browser then sees no click at all on a table refreshed ten times a second.

:class:`RowClicks` therefore acts on the *press* of a mouse button on a row: the browser
reads that row's key from the row it shows at that instant and sends the key:

    clicks = RowClicks("trace_id", open_trace)          # open_trace("4bf9...") on a click
    table = pn.widgets.Tabulator(frame, configuration=clicks.configuration())
    pn.Column(table, clicks.panel)                      # the page needs its (hidden) part
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import panel as pn
from panel.io import JSCode

__all__ = ["RowClicks"]

# Tabulator's cellMouseDown, in the browser: the pressed row's key goes to the hidden
# input of these clicks (found by its CSS class), whose value Panel brings to Python.
_ON_PRESS = """(event, cell) => {
  const key = cell.getData()[%(key)s];
  if (key == null || !window.Bokeh) return;
  for (const doc of Bokeh.documents) {
    for (const model of doc.all_models) {
      if ((model.css_classes || []).includes(%(tag)s)) {
        model.value = `${performance.now()} ${key}`;  // new even for the same row again
      }
    }
  }
}"""


class RowClicks:
    """Calls ``on_click(key)`` with the ``key`` column's value of the row a user clicks.

    Args:
        key: the column naming a row (it may be hidden).
        on_click: called with the clicked row's key, as text.

    The table gets the press handler through its ``configuration`` (:meth:`configuration`);
    :attr:`panel`, hidden, must be on the page with it.
    """

    def __init__(self, key: str, on_click: Callable[[str], None]):
        self._on_click = on_click
        self._key = key
        self._tag = f"loom-clicks-{uuid.uuid4().hex[:12]}"
        # a hidden widget of the page: the browser sets its value, Panel syncs it here
        self.panel = pn.widgets.TextInput(visible=False, margin=0, width=0, css_classes=[self._tag])
        self.panel.param.watch(self._sent, "value")

    def configuration(self, base: dict[str, Any] | None = None) -> dict[str, Any]:
        """A Tabulator ``configuration`` (``base`` and the press handler)."""
        base = dict(base or {})
        defaults = dict(base.get("columnDefaults", {}))
        code = _ON_PRESS % {"key": json.dumps(self._key), "tag": json.dumps(self._tag)}
        defaults["cellMouseDown"] = JSCode(code)
        return {**base, "columnDefaults": defaults}

    def click(self, key: str) -> None:
        """Do what a click on the row whose key is ``key`` does (from Python)."""
        self._on_click(key)

    def _sent(self, event: Any) -> None:
        _, _, key = str(event.new).partition(" ")
        if key:
            self._on_click(key)
