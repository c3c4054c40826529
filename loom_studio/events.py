"""The event stream of the dashboard: the newest events first, a topic filter, pause, and
the payload of the event clicked.

The newest row is the table's first: the newest events are in view without scrolling, and
the page never has to follow the stream (Tabulator's own follow, after a ``stream`` with
rollover, left the table at its oldest rows every other refresh). Each refresh that brings
events sends the table's rows again (at most :data:`MAX_ROWS`, at most ~10 times a second).
Rows are not selected: Tabulator scrolls a selected row to the middle of the table when the
rows change, which would take the newest rows out of view; the payload pane names the event
clicked instead.
"""

from __future__ import annotations

import html
import json
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import pandas as pd
import panel as pn

from loom_kernel import TopicError
from loom_kernel.protocol import compile_pattern

from .feed import EventRow, StudioFeed
from .tables import RowClicks

__all__ = ["MAX_ROWS", "EventStream", "event_frame"]

MAX_ROWS = 500  # rows the event stream keeps
EVENT_COLUMNS = ["seq", "time", "topic", "source", "type", "size"]


def event_frame(rows: Iterable[EventRow]) -> pd.DataFrame:
    """The table's rows, in the order given."""
    return pd.DataFrame(
        [(r.seq, _clock(r.ts), r.topic, r.source, r.type, r.size) for r in rows],
        columns=EVENT_COLUMNS,
    ).astype({"seq": "int64", "size": "int64"})  # typed with no rows too (see agent_frame)


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def _payload(row: EventRow) -> dict[str, Any]:
    """The event as the JSON pane shows it; payloads that are not JSON show as text."""
    shown = {key: getattr(row, key) for key in ("topic", "source", "type", "id", "size")}
    return {**shown, "time": _clock(row.ts), "data": json.loads(json.dumps(row.data, default=repr))}


class EventStream:
    """The event stream: filter, pause, and the payload of the clicked event."""

    def __init__(self) -> None:
        self.pattern = pn.widgets.TextInput(
            placeholder="topic pattern, e.g. market.price.*", width=280, margin=(5, 10)
        )
        self.pause = pn.widgets.Toggle(label="Pause", width=90, margin=(5, 10))
        self.waiting = pn.pane.HTML("", margin=(12, 10))
        self.error = pn.pane.Alert("", alert_type="danger", visible=False, margin=(0, 10))
        self.clicks = RowClicks("seq", self._on_click)
        self.table = pn.widgets.Tabulator(
            event_frame([]), disabled=True, selectable=False, show_index=False,
            hidden_columns=["seq"], layout="fit_data_stretch", height=360,
            sizing_mode="stretch_width", pagination=None,  # scroll, never page (Panel pages >200)
            configuration=self.clicks.configuration(),
        )  # fmt: skip
        self.payload = pn.pane.JSON({}, depth=3, height=330, sizing_mode="stretch_width")
        self.payload_title = pn.pane.HTML(
            "<b>Payload</b> <small>(click an event)</small>", margin=(0, 10)
        )
        self.last_seq = 0
        self.applied = ""  # the pattern the table shows
        self.shown: deque[EventRow] = deque(maxlen=MAX_ROWS)  # the table's rows, oldest first
        self._reset = False
        self._feed: StudioFeed | None = None  # the feed of the last refresh: clicks look in it
        self.pattern.param.watch(self._on_pattern, "value")
        self.pause.param.watch(self._on_pause, "value")
        controls = pn.Row(self.pattern, self.pause, self.waiting, self.clicks.panel)
        payload = pn.Column(self.payload_title, self.payload, width=420)
        self.panel = pn.Card(
            controls, self.error, pn.Row(self.table, payload, sizing_mode="stretch_width"),
            title="Event stream", collapsible=False, sizing_mode="stretch_width", margin=(5, 5),
        )  # fmt: skip

    def _on_pattern(self, event: Any) -> None:
        text = event.new.strip()
        try:
            if text:
                compile_pattern(text)
        except TopicError as exc:
            self.error.object = str(exc)
            self.error.visible = True
            return
        self.error.visible = False
        if text != self.applied:
            self.applied = text
            self._reset = True

    def _on_pause(self, event: Any) -> None:
        self.pause.label = "Resume" if event.new else "Pause"
        if not event.new:
            self.waiting.object = ""

    def _on_click(self, key: str) -> None:
        # the page may show rows that have left the table here since: a loaded browser draws
        # the refreshes late, so a row it shows may be seconds old; the feed holds more
        row = next((row for row in self.shown if str(row.seq) == key), None)
        if row is None and self._feed is not None and key.isdigit():
            row = self._feed.event(int(key))
        if row is None:
            held = self._feed.max_events if self._feed is not None else MAX_ROWS
            self.payload_title.object = (
                "<b>Payload</b> <small>that event is no longer held: the studio keeps the "
                f"last {held:,} events; pause the stream to look at one at leisure</small>"
            )
            return
        self.payload.object = _payload(row)
        self.payload_title.object = (
            f"<b>Payload</b> <small>{_clock(row.ts)} {html.escape(row.topic)} "
            f"from {html.escape(row.source)}</small>"
        )

    def refresh(self, feed: StudioFeed) -> None:
        self._feed = feed
        pattern = self.applied or None
        if self.pause.value:
            waiting = len(feed.events_since(self.last_seq, pattern))
            self.waiting.object = f"<b>{waiting:,}</b> events waiting"
            return
        changed = self._reset
        if self._reset:
            self._reset = False
            self.shown.clear()
            self.last_seq = 0
        rows = feed.events_since(self.last_seq, pattern)[-MAX_ROWS:]
        self.last_seq = feed.seq
        if rows or changed:
            self.shown.extend(rows)
            self.table.value = event_frame(reversed(self.shown))  # the newest first
