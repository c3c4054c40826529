"""One topic in the explorer: who publishes and who subscribes, the payload's inferred
schema, the last events, and a form from that schema to publish a test event or send a
request and see the reply."""

from __future__ import annotations

import contextlib
import html
import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn

from loom_kernel import LoomError, RemoteError, RequestTimeout

from .schema_form import SchemaForm
from .tables import RowClicks
from .topic_index import TopicIndex, TopicStats

if TYPE_CHECKING:
    from loom_kernel import Runtime

__all__ = ["EVENT_COLUMNS", "TopicDetail", "events_frame"]

EVENT_COLUMNS = ["time", "source", "type", "payload", "id"]
PREVIEW = 160  # characters of a payload the events table shows
REQUEST_TIMEOUT_S = 2.0


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def _json(data: Any) -> Any:
    return json.loads(json.dumps(data, default=repr))


def events_frame(stats: TopicStats | None) -> pd.DataFrame:
    """The topic's last events, newest first, their payload as JSON text."""
    rows = [
        (_clock(e.ts), e.source, e.type, json.dumps(e.data, default=repr)[:PREVIEW], e.id)
        for e in reversed(stats.events if stats else [])
    ]
    return pd.DataFrame(rows, columns=EVENT_COLUMNS)


def _small_table(columns: list[str], height: int, **options: Any) -> pn.widgets.Tabulator:
    return pn.widgets.Tabulator(
        pd.DataFrame([], columns=columns), disabled=True, selectable=False, show_index=False,
        layout="fit_data_stretch", height=height, sizing_mode="stretch_width", pagination=None,
        **options,
    )  # fmt: skip


class TopicDetail:
    """The card of the selected topic.

    ``changing`` wraps what the card changes outside a refresh (sending, its answer): the
    explorer's ``updating_page``, so that in a notebook the changes reach the page in order.
    """

    def __init__(self) -> None:
        self.changing: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
        self.topic: str | None = None
        self.title = pn.pane.HTML("<b>Select a topic in the tree</b>", margin=(5, 10))
        self.publishers = _small_table(["source", "events"], 130)
        self.subscribers = _small_table(["agent", "pattern"], 130)
        self.schema = pn.pane.JSON({}, depth=4, height=260, sizing_mode="stretch_width")
        self.clicks = RowClicks("id", self.show_event)
        self.events = _small_table(
            EVENT_COLUMNS, 240, hidden_columns=["id"], configuration=self.clicks.configuration()
        )
        self.payload_title = pn.pane.HTML("", margin=(0, 10))
        self.payload = pn.pane.JSON({}, depth=3, height=210, sizing_mode="stretch_width")
        self._payload_id: str | None = None  # the event the payload pane shows (None: newest)
        self._stats: TopicStats | None = None
        self.form = SchemaForm({})
        self.form_area = pn.Column(self.form.panel, margin=0)
        self.publish_button = pn.widgets.Button(label="Publish", color="primary", width=110)
        self.request_button = pn.widgets.Button(label="Send request", width=130)
        self.status = pn.pane.Alert("", alert_type="info", visible=False, margin=(5, 10))
        self.reply = pn.pane.JSON({}, depth=3, visible=False, sizing_mode="stretch_width")
        self.publish_button.on_click(self._on_publish)
        self.request_button.on_click(self._on_request)
        self._shown = (-1, -1)  # (count, schema samples) the card shows
        self._form_samples = 0
        self.runtime: Runtime | None = None
        send = pn.Column(
            pn.pane.HTML("<b>Publish a test event</b> <small>(form from the schema)</small>"),
            self.form_area, pn.Row(self.publish_button, self.request_button),
            self.status, self.reply, width=340,
        )  # fmt: skip
        who = pn.Column(
            pn.pane.HTML("<b>Publishers</b> <small>(sources seen)</small>"), self.publishers,
            pn.pane.HTML("<b>Subscribers</b> <small>(agents' patterns matching it)</small>"),
            self.subscribers, sizing_mode="stretch_width",
        )  # fmt: skip
        schema = pn.Column(
            pn.pane.HTML("<b>Payload schema</b> <small>(inferred from traffic)</small>"),
            self.schema, sizing_mode="stretch_width",
        )  # fmt: skip
        self.panel = pn.Card(
            self.title,
            pn.Row(who, schema, send, sizing_mode="stretch_width"),
            pn.pane.HTML(
                "<b>Last events</b> <small>(newest first; click one for its whole payload)</small>",
                margin=(0, 10),
            ),
            pn.Row(
                self.events, pn.Column(self.payload_title, self.payload, width=420),
                self.clicks.panel, sizing_mode="stretch_width",
            ),
            title="Topic", collapsible=False, sizing_mode="stretch_width", margin=(5, 5),
        )  # fmt: skip

    def select(self, topic: str, index: TopicIndex) -> None:
        self.topic = topic
        self._shown = (-1, -1)
        self._payload_id = None
        self.status.visible = self.reply.visible = False
        self._new_form(index.topics.get(topic))
        self.refresh(index)

    def _new_form(self, stats: TopicStats | None) -> None:
        schema = stats.json_schema() if stats else {}
        example = stats.events[-1].data if stats and stats.events else None
        self.form = SchemaForm(schema, _json(example) if example is not None else None)
        self._form_samples = stats.samples if stats else 0
        self.form_area.objects = [self.form.panel]

    def refresh(self, index: TopicIndex) -> None:
        if self.topic is None:
            return
        stats = index.topics.get(self.topic)
        subscribers = index.subscribers(self.topic)
        frame = pd.DataFrame(subscribers, columns=["agent", "pattern"])
        if not frame.equals(self.subscribers.value):
            self.subscribers.value = frame
        state = (stats.count, stats.samples) if stats else (0, 0)
        if state == self._shown:
            return
        self._shown = state
        rate = index.rate(self.topic)
        self.title.object = (
            f"<b>{html.escape(self.topic)}</b> &nbsp; {state[0]:,} events, {rate:,.1f}/s"
        )
        publishers = stats.publishers.most_common() if stats else []
        self.publishers.value = pd.DataFrame(publishers, columns=["source", "events"])
        self.schema.object = stats.json_schema() if stats else {}
        self.events.value = events_frame(stats)
        self._stats = stats
        self._show_payload()
        if stats and not self._form_samples and stats.samples:
            self._new_form(stats)  # the first payload: now there is a schema to build from

    def show_event(self, event_id: str) -> None:
        """Show the whole payload of one of the last events (a click on its row)."""
        self._payload_id = event_id
        self._show_payload()

    def _show_payload(self) -> None:
        events = list(self._stats.events) if self._stats else []
        chosen = next((e for e in events if e.id == self._payload_id), None)
        chosen = chosen or (events[-1] if events else None)
        if chosen is None:
            self.payload_title.object, self.payload.object = "", {}
            return
        which = "clicked" if chosen.id == self._payload_id else "newest"
        self.payload_title.object = (
            f"<b>Payload</b> <small>{which}: {_clock(chosen.ts)} from "
            f"{html.escape(chosen.source)}</small>"
        )
        self.payload.object = {"data": _json(chosen.data)}

    # -- sending ------------------------------------------------------------------------------

    def _say(self, text: str, kind: str = "info") -> None:
        with self.changing():
            self.status.object = text
            self.status.alert_type = kind
            self.status.visible = True

    def _payload(self) -> tuple[bool, Any]:
        if self.topic is None or self.runtime is None:
            self._say("not connected to the bus yet" if self.topic else "select a topic", "warning")
            return False, None
        try:
            return True, self.form.payload()
        except ValueError as exc:
            self._say(str(exc), "danger")
            return False, None

    async def publish(self) -> str | None:
        """Publish the form's payload on the topic; the event's id."""
        ok, payload = self._payload()
        if not ok or self.runtime is None or self.topic is None:
            return None
        try:
            event = await self.runtime.emit(self.topic, payload)
        except LoomError as exc:
            self._say(str(exc), "danger")
            return None
        self._say(f"published {event.id} on {self.topic}", "success")
        return event.id

    async def request(self, timeout: float = REQUEST_TIMEOUT_S) -> Any:
        """Send the form's payload as a request on the topic; the reply's data."""
        ok, payload = self._payload()
        if not ok or self.runtime is None or self.topic is None:
            return None
        with self.changing():
            self.reply.visible = False
        try:
            answer = await self.runtime.request(self.topic, payload, timeout=timeout)
        except RequestTimeout:
            self._say(f"no reply within {timeout:g} s: no agent answers {self.topic}", "warning")
            return None
        except (RemoteError, LoomError) as exc:
            self._say(f"the responder failed: {exc}", "danger")
            return None
        self._say(f"reply from {answer.source}", "success")
        with self.changing():
            self.reply.object = {"data": _json(answer.data)}
            self.reply.visible = True
        return answer.data

    async def _on_publish(self, event: Any) -> None:
        await self.publish()

    async def _on_request(self, event: Any) -> None:
        await self.request()
