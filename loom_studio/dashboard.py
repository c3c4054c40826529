"""The dashboard: the agents, the event stream, the topology and the QoS of a live system.

Every part reads a :class:`~loom_studio.feed.StudioFeed` and nothing else. One periodic
callback per dashboard (every :data:`~loom_studio.feed.REFRESH_MS`) calls
:meth:`Dashboard.refresh`, which takes what changed since the last look and updates the
widgets in place: the event table's rows (:mod:`~loom_studio.events`), in-place
``ColumnDataSource`` updates for the plots (:mod:`~loom_studio.topology` and the QoS),
nothing sent when nothing changed. The page therefore gets at most ~10 updates a second,
whatever the event rate.

>>> from loom_studio import Dashboard        # doctest: +SKIP
>>> Dashboard(runtime=rt)                     # a notebook cell: live beside your agents
"""

from __future__ import annotations

import html
import logging
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource
from bokeh.plotting import figure

from .events import EventStream
from .feed import REFRESH_MS, StudioFeed, get_feed
from .notebook import InlineViewer
from .topology import Topology

if TYPE_CHECKING:
    from loom_kernel import Runtime

__all__ = ["Dashboard", "agent_frame"]

log = logging.getLogger("loom.studio")

STALE_BEATS = 3  # heartbeats missed before an agent shows as "silent"
DEFAULT_HEARTBEAT = 1.0  # seconds, until the feed's runtime tells the real interval

STATUS_COLORS = {
    "running": "#2e7d32",
    "idle": "#607d8b",
    "stalled": "#ef6c00",
    "stopped": "#455a64",
    "failed": "#c62828",
    "silent": "#8e24aa",
}
AGENT_COLUMNS = {  # heartbeat field -> column
    "status": "status",
    "handled": "handled",
    "emitted": "emitted",
    "errors": "errors",
    "queue_depth": "queue",
    "dropped": "dropped",
    "lost": "lost",
    "latency_p50_ms": "p50 ms",
    "latency_p99_ms": "p99 ms",
    "uptime_s": "uptime",
    "process": "process",
    "last_error": "last error",
}
COUNT_COLUMNS = ("handled", "emitted", "errors", "queue", "dropped", "lost")
LATENCY_COLUMNS = ("p50 ms", "p99 ms")
DELIVERY_COLUMNS = ["agent", "delivered", "dropped", "lost", "loss %"]
HISTORY_COLUMNS = ["t", "events", "p50_ms", "p99_ms"]


# -- what the views show, as plain data ------------------------------------------------------


def agent_frame(
    agents: Mapping[str, Mapping[str, Any]], now: float, stale_after: float
) -> pd.DataFrame:
    """One row per agent (index: its id) from its last heartbeat.

    An agent whose last heartbeat is older than ``stale_after`` seconds shows as
    ``silent``, unless it said it stopped or failed.
    """
    rows = []
    for agent_id in sorted(agents):
        beat = agents[agent_id]
        row = {column: beat.get(field) for field, column in AGENT_COLUMNS.items()}
        if now - beat.get("seen", 0.0) > stale_after and row["status"] not in ("stopped", "failed"):
            row["status"] = "silent"
        for column in COUNT_COLUMNS:
            row[column] = int(row[column] or 0)
        for column in LATENCY_COLUMNS:
            row[column] = round(float(row[column] or 0.0), 2)
        row["uptime"] = _duration(row["uptime"])
        row["process"] = row["process"] or ""
        row["last error"] = row["last error"] or ""
        rows.append({"agent": agent_id, **row})
    columns = ["agent", *AGENT_COLUMNS.values()]
    # typed even with no rows: when a column's type changes, the browser rebuilds the table
    # (its sorters change) and a style update can reach it half built
    types = {**dict.fromkeys(COUNT_COLUMNS, "int64"), **dict.fromkeys(LATENCY_COLUMNS, "float64")}
    return pd.DataFrame(rows, columns=columns).set_index("agent").astype(types)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


# -- the parts of the page -----------------------------------------------------------------


class _Header:
    """The numbers at the top: connection, events/s, agents running, errors, studio drops."""

    def __init__(self) -> None:
        self.connection = pn.pane.HTML("", margin=(18, 10), width=260)
        style = {"font_size": "26pt", "title_size": "10pt", "margin": (5, 20)}
        self.rate = pn.indicators.Number(label="events/s", value=0, format="{value:,.0f}", **style)
        self.running = pn.indicators.Number(label="agents running", value=0, **style)
        self.errors = pn.indicators.Number(
            label="errors", value=0, colors=[(0, "#333333"), (math.inf, "#c62828")], **style
        )
        self.drops = pn.indicators.Number(
            label="studio drops", value=0, colors=[(0, "#333333"), (math.inf, "#ef6c00")], **style
        )
        # spans lost on the way to an OTLP backend (Phoenix, Jaeger): said, never silent
        self.tracing = pn.pane.Alert("", alert_type="warning", visible=False, margin=(0, 10))
        self.panel = pn.Column(
            pn.Row(
                self.connection, self.rate, self.running, self.errors, self.drops,
                sizing_mode="stretch_width",
            ),
            self.tracing,
            sizing_mode="stretch_width",
        )  # fmt: skip

    def refresh(self, feed: StudioFeed, agents: pd.DataFrame) -> None:
        if feed.runtime is None:
            text = '<span style="color:#ef6c00">&#9676; connecting&hellip;</span>'
        else:
            bus = feed.runtime.address.publish if feed.runtime.address else ""
            text = f'<span style="color:#2e7d32">&#9679; connected</span> <small>{bus}</small>'
            if feed.tenant is not None:
                text += f" <b>tenant {html.escape(feed.tenant.name)}</b>"
        self.connection.object = text
        self.rate.value = feed.throughput()
        self.running.value = int((agents["status"] == "running").sum())
        self.errors.value = int(agents["errors"].sum())
        self.drops.value = feed.statistics()["dropped"]
        notes = "\n\n".join(html.escape(note) for note in feed.tracing_notes())
        if notes != self.tracing.object:
            self.tracing.object = notes
            self.tracing.visible = bool(notes)


class _Agents:
    """The agents table: live status from the heartbeats; the observers in a line below."""

    def __init__(self) -> None:
        self.table = pn.widgets.Tabulator(
            agent_frame({}, 0.0, 1.0), disabled=True, selectable=False, show_index=True,
            layout="fit_data_stretch", max_height=300, sizing_mode="stretch_width",
            widths={"last error": 320},
        )  # fmt: skip
        self.table.style.map(_status_css, subset=["status"])
        self.observers = pn.pane.HTML("", visible=False, margin=(0, 10))
        self.panel = pn.Card(self.table, self.observers, title="Agents", collapsible=False, **_CARD)

    def refresh(self, agents: pd.DataFrame, observers: pd.DataFrame) -> None:
        if not agents.equals(self.table.value):
            self.table.value = agents
        text = _observers_html(observers)
        if text != self.observers.object:
            self.observers.object = text
            self.observers.visible = bool(text)


def _observers_html(observers: pd.DataFrame) -> str:
    """One line: the observer agents (they watch the system; not counted as its agents)."""
    items = [
        f"{html.escape(str(agent_id))} <i>{html.escape(row['status'] or '?')}"
        + (f", {row['errors']} errors" if row["errors"] else "")
        + "</i>"
        for agent_id, row in observers.iterrows()
    ]
    if not items:
        return ""
    return f"<small>Observers (they watch, they are not in the flow): {' · '.join(items)}</small>"


def _status_css(status: str) -> str:
    color = STATUS_COLORS.get(status)
    return f"color: {color}; font-weight: bold" if color else ""


class _Qos:
    """Throughput and latency over time; delivered, dropped and lost per agent."""

    def __init__(self) -> None:
        self.history = ColumnDataSource({column: [] for column in HISTORY_COLUMNS})
        self.last_t = 0
        self.throughput = _time_figure("events / s")
        self.throughput.line("t", "events", source=self.history, line_width=2, color="#1565c0")
        self.latency = _time_figure("latency (ms, publish → handler)")
        self.latency.x_range = self.throughput.x_range
        for column, color, label in (("p50_ms", "#2e7d32", "p50"), ("p99_ms", "#c62828", "p99")):
            self.latency.line(
                "t", column, source=self.history, line_width=2, color=color, legend_label=label
            )
        self.latency.legend.location = "top_left"
        self.latency.legend.orientation = "horizontal"
        self.delivery = pn.widgets.Tabulator(  # no height: it grows with its rows, none cut
            pd.DataFrame(columns=DELIVERY_COLUMNS), disabled=True, selectable=False,
            show_index=False, layout="fit_data_stretch", sizing_mode="stretch_width",
        )  # fmt: skip
        self.panes = [
            pn.pane.Bokeh(f, sizing_mode="stretch_width") for f in (self.throughput, self.latency)
        ]
        self.panel = pn.Card(
            *self.panes, self.delivery, title="QoS", collapsible=False, width=560, margin=(5, 5)
        )

    def refresh(self, feed: StudioFeed, agents: pd.DataFrame) -> bool:
        """Stream new history points; True when a plot changed."""
        delivery = _delivery_frame(agents)
        if not delivery.equals(self.delivery.value):
            self.delivery.value = delivery
        new = [point for point in feed.history if point["t"] > self.last_t]
        if not new:
            return False
        self.last_t = new[-1]["t"]
        data = {column: [point.get(column, 0) for point in new] for column in HISTORY_COLUMNS}
        data["t"] = [t * 1000 for t in data["t"]]  # Bokeh's datetime axis counts milliseconds
        self.history.stream(data, rollover=feed.history.maxlen)
        return True


def _time_figure(title: str) -> Any:
    fig = figure(
        title=title, height=190, x_axis_type="datetime", sizing_mode="stretch_width",
        tools="pan,xwheel_zoom,reset", toolbar_location=None,
    )  # fmt: skip
    fig.y_range.start = 0
    fig.title.text_font_size = "10pt"
    return fig


def _delivery_frame(agents: pd.DataFrame) -> pd.DataFrame:
    frame = agents[["handled", "dropped", "lost"]].rename(columns={"handled": "delivered"})
    missing = frame["dropped"] + frame["lost"]
    sent = (frame["delivered"] + missing).where(lambda n: n > 0, 1)
    frame["loss %"] = (100 * missing / sent).round(2)
    return frame.reset_index()[DELIVERY_COLUMNS]


_CARD = {"sizing_mode": "stretch_width", "margin": (5, 5)}


# -- the dashboard -------------------------------------------------------------------------


class Dashboard(InlineViewer):
    """The live picture of a running system: agents, event stream, topology and QoS.

    Args:
        feed: the :class:`StudioFeed` to show; by default this process's feed, which
            joins ``runtime``'s bus (a notebook's), or the project's bus.
        runtime: the runtime whose bus the default feed observes.
        refresh_ms: milliseconds between refreshes of the page.

    Shown in a notebook cell or served, it refreshes itself on one periodic callback,
    which stops with the browser session (or with :meth:`stop`). :meth:`refresh` brings
    every part up to date at once, for tests and scripts.
    """

    def __init__(
        self,
        feed: StudioFeed | None = None,
        *,
        runtime: Runtime | None = None,
        refresh_ms: int = REFRESH_MS,
        **params: Any,
    ):
        super().__init__(**params)
        self.feed = feed if feed is not None else get_feed(runtime=runtime)
        self.refresh_ms = refresh_ms
        self.header = _Header()
        self.agents = _Agents()
        self.events = EventStream()
        self.topology = Topology()
        self.qos = _Qos()
        self._callback: Any = None
        self._layout = pn.Column(
            self.header.panel,
            self.agents.panel,
            pn.Row(self.topology.panel, self.qos.panel, sizing_mode="stretch_width"),
            self.events.panel,
            sizing_mode="stretch_width",
        )
        self.refresh()

    def __panel__(self) -> pn.viewable.Viewable:
        pn.state.onload(self._start)  # once the page is there (at once in a notebook)
        return self._layout

    @property
    def running(self) -> bool:
        """Whether the periodic refresh runs."""
        return self._callback is not None and self._callback.running

    def refresh(self) -> None:
        """Bring every part up to date with the feed, in one batch of changes."""
        now, stale_after = time.time(), self._stale_after()
        agents = agent_frame(self.feed.agents, now, stale_after)
        observers = agent_frame(self.feed.observers, now, stale_after)
        with pn.io.hold():  # every change of this refresh goes to the page as one message
            self.header.refresh(self.feed, agents)
            self.agents.refresh(agents, observers)
            self.events.refresh(self.feed)
            plotted = self.topology.refresh(self.feed)
            plotted = self.qos.refresh(self.feed, agents) or plotted
        if plotted:  # a notebook does not see direct Bokeh changes unless pushed
            pn.io.push_notebook(self.topology.pane, *self.qos.panes)

    def stop(self) -> None:
        """Stop refreshing (a served page stops by itself when its session ends)."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def _start(self) -> None:
        if not self.running:
            self._callback = pn.state.add_periodic_callback(self._refresh, period=self.refresh_ms)

    def _refresh(self) -> None:
        try:
            with self.updating_page():  # in a notebook: once the page shows it, in order
                self.refresh()
        except Exception:  # a bad refresh must not end the page's updates: log, go on
            log.exception("dashboard refresh failed")

    def _stale_after(self) -> float:
        runtime = self.feed.runtime
        interval = runtime.config.runtime.heartbeat_interval if runtime else DEFAULT_HEARTBEAT
        return STALE_BEATS * interval
