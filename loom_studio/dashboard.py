"""The dashboard: the agents, the event stream, the topology and the QoS of a live system.

Every part reads a :class:`~loom_studio.feed.StudioFeed` and nothing else. One periodic
callback per dashboard (every :data:`~loom_studio.feed.REFRESH_MS`) calls
:meth:`Dashboard.refresh`, which takes what changed since the last look and updates the
widgets in place: one ``Tabulator.stream`` for the new events, in-place
``ColumnDataSource`` updates for the plots, nothing sent when nothing changed. The page
therefore gets at most ~10 updates a second, whatever the event rate.

>>> from loom_studio import Dashboard        # doctest: +SKIP
>>> Dashboard(runtime=rt)                     # a notebook cell: live beside your agents
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
from bokeh.models import Arrow, ColumnDataSource, HoverTool, VeeHead
from bokeh.plotting import figure

from loom_kernel import TopicError
from loom_kernel.protocol import compile_pattern

from .feed import REFRESH_MS, EventRow, StudioFeed, get_feed

if TYPE_CHECKING:
    from loom_kernel import Runtime

__all__ = ["Dashboard", "agent_frame", "layered_layout"]

log = logging.getLogger("loom.studio")

MAX_ROWS = 500  # rows the event stream keeps
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
KINDS = {  # topology node kind -> (marker, colour)
    "agent": ("circle", "#1565c0"),
    "topic": ("square", "#ef6c00"),
    "mcp": ("diamond", "#2e7d32"),
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
EVENT_COLUMNS = ["seq", "time", "topic", "source", "type", "size"]
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
        for column in ("handled", "emitted", "errors", "queue", "dropped", "lost"):
            row[column] = int(row[column] or 0)
        for column in ("p50 ms", "p99 ms"):
            row[column] = round(float(row[column] or 0.0), 2)
        row["uptime"] = _duration(row["uptime"])
        row["process"] = row["process"] or ""
        row["last error"] = row["last error"] or ""
        rows.append({"agent": agent_id, **row})
    columns = ["agent", *AGENT_COLUMNS.values()]
    return pd.DataFrame(rows, columns=columns).set_index("agent")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _event_frame(rows: Iterable[EventRow]) -> pd.DataFrame:
    return pd.DataFrame(
        [(r.seq, _clock(r.ts), r.topic, r.source, r.type, r.size) for r in rows],
        columns=EVENT_COLUMNS,
    )


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) + f".{int(ts * 1000) % 1000:03d}"


def _payload(row: EventRow) -> dict[str, Any]:
    """The event as the JSON pane shows it; payloads that are not JSON show as text."""
    shown = {key: getattr(row, key) for key in ("topic", "source", "type", "id", "size")}
    return {**shown, "time": _clock(row.ts), "data": json.loads(json.dumps(row.data, default=repr))}


def _rate_label(rate: float) -> str:
    if rate <= 0:
        return ""
    return f"{rate:.1f}/s" if rate < 100 else f"{rate:,.0f}/s"


def layered_layout(
    nodes: Mapping[str, str], edges: Iterable[tuple[str, str]]
) -> dict[str, tuple[float, float]]:
    """Positions, left to right along the flow: each node one layer right of its
    furthest upstream node (producers, then their topics, then the consumers...).

    Cycles (requests and their replies) are cut where a depth-first walk from the
    sources meets them, so they do not stretch the picture. Within a layer, nodes are
    ordered by the mean position of their upstream nodes (fewer crossings), then by
    kind and name, so the same graph always gets the same picture.
    """
    order = sorted(nodes, key=lambda n: (nodes[n], n))
    targets: dict[str, list[str]] = {n: [] for n in order}
    for a, b in sorted(set(edges)):
        if a in targets and b in targets and a != b:
            targets[a].append(b)
    upstream = _acyclic_upstream(order, targets)
    layer: dict[str, int] = {}
    for node in _topological(order, upstream):
        layer[node] = max((layer[u] + 1 for u in upstream[node]), default=0)
    positions: dict[str, tuple[float, float]] = {}
    for depth in range(max(layer.values(), default=-1) + 1):
        members = [n for n in order if layer[n] == depth]
        members.sort(key=lambda n: _barycenter(upstream[n], positions))
        for i, node in enumerate(members):
            positions[node] = (float(depth), (len(members) - 1) / 2 - i)
    return positions


def _acyclic_upstream(order: list[str], targets: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each node's upstream nodes, without the edges that close a cycle."""
    has_input = {b for outs in targets.values() for b in outs}
    roots = [n for n in order if n not in has_input] + order
    upstream: dict[str, list[str]] = {n: [] for n in order}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in roots:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(targets[root]))]
        while stack:
            node, outs = stack[-1]
            nxt = next(outs, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) != 1:  # an edge back onto the path would close a cycle
                upstream[nxt].append(node)
                if nxt not in state:
                    state[nxt] = 1
                    stack.append((nxt, iter(targets[nxt])))
    return upstream


def _topological(order: list[str], upstream: dict[str, list[str]]) -> list[str]:
    done: set[str] = set()
    result: list[str] = []
    pending = list(order)
    while pending:
        ready = [n for n in pending if all(u in done for u in upstream[n])]
        done.update(ready)
        result.extend(ready)
        pending = [n for n in pending if n not in done]
    return result


def _barycenter(upstream: list[str], positions: dict[str, tuple[float, float]]) -> float:
    ys = [positions[u][1] for u in upstream if u in positions]
    return -sum(ys) / len(ys) if ys else 0.0


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
        self.panel = pn.Row(
            self.connection, self.rate, self.running, self.errors, self.drops,
            sizing_mode="stretch_width",
        )  # fmt: skip

    def refresh(self, feed: StudioFeed, agents: pd.DataFrame) -> None:
        if feed.runtime is None:
            text = '<span style="color:#ef6c00">&#9676; connecting&hellip;</span>'
        else:
            bus = feed.runtime.address.publish if feed.runtime.address else ""
            text = f'<span style="color:#2e7d32">&#9679; connected</span> <small>{bus}</small>'
        self.connection.object = text
        self.rate.value = feed.throughput()
        self.running.value = int((agents["status"] == "running").sum())
        self.errors.value = int(agents["errors"].sum())
        self.drops.value = feed.statistics()["dropped"]


class _Agents:
    """The agents table: live status from the heartbeats."""

    def __init__(self) -> None:
        self.table = pn.widgets.Tabulator(
            agent_frame({}, 0.0, 1.0), disabled=True, selectable=False, show_index=True,
            layout="fit_data_stretch", max_height=300, sizing_mode="stretch_width",
            widths={"last error": 320},
        )  # fmt: skip
        self.table.style.map(_status_css, subset=["status"])
        self.panel = pn.Card(self.table, title="Agents", collapsible=False, **_CARD)

    def refresh(self, agents: pd.DataFrame) -> None:
        if not agents.equals(self.table.value):
            self.table.value = agents


def _status_css(status: str) -> str:
    color = STATUS_COLORS.get(status)
    return f"color: {color}; font-weight: bold" if color else ""


class _Events:
    """The event stream: filter, pause, and the payload of the selected event."""

    def __init__(self) -> None:
        self.pattern = pn.widgets.TextInput(
            placeholder="topic pattern, e.g. market.price.*", width=280, margin=(5, 10)
        )
        self.pause = pn.widgets.Toggle(label="Pause", width=90, margin=(5, 10))
        self.waiting = pn.pane.HTML("", margin=(12, 10))
        self.error = pn.pane.Alert("", alert_type="danger", visible=False, margin=(0, 10))
        self.table = pn.widgets.Tabulator(
            _event_frame([]), disabled=True, selectable=1, show_index=False,
            hidden_columns=["seq"], layout="fit_data_stretch", height=360,
            sizing_mode="stretch_width", pagination=None,  # scroll, never page (Panel pages >200)
        )  # fmt: skip
        self.payload = pn.pane.JSON({}, depth=3, height=330, sizing_mode="stretch_width")
        self.last_seq = 0
        self.applied = ""  # the pattern the table shows
        self._reset = False
        self._rows: dict[int, EventRow] = {}  # seq -> row, for the rows in the table
        self.pattern.param.watch(self._on_pattern, "value")
        self.pause.param.watch(self._on_pause, "value")
        self.table.param.watch(self._on_select, "selection")
        controls = pn.Row(self.pattern, self.pause, self.waiting)
        payload = pn.Column(
            pn.pane.HTML("<b>Payload</b> <small>(select an event)</small>", margin=(0, 10)),
            self.payload, width=420,
        )  # fmt: skip
        self.panel = pn.Card(
            controls, self.error, pn.Row(self.table, payload, sizing_mode="stretch_width"),
            title="Event stream", collapsible=False, **_CARD,
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

    def _on_select(self, event: Any) -> None:
        if not event.new:
            return
        index = event.new[0]
        if index < len(self.table.value):
            row = self._rows.get(int(self.table.value["seq"].iloc[index]))
            if row is not None:
                self.payload.object = _payload(row)

    def refresh(self, feed: StudioFeed) -> None:
        pattern = self.applied or None
        if self.pause.value:
            waiting = len(feed.events_since(self.last_seq, pattern))
            self.waiting.object = f"<b>{waiting:,}</b> events waiting"
            return
        if self._reset:
            self._reset = False
            rows = feed.events_since(0, pattern)[-MAX_ROWS:]
            self._rows = {row.seq: row for row in rows}
            self.table.value = _event_frame(rows)
        else:
            rows = feed.events_since(self.last_seq, pattern)[-MAX_ROWS:]
            if rows:
                self._rows.update((row.seq, row) for row in rows)
                for seq in list(self._rows)[: max(0, len(self._rows) - MAX_ROWS)]:
                    del self._rows[seq]
                self.table.stream(_event_frame(rows), rollover=MAX_ROWS)
        self.last_seq = feed.seq


class _Topology:
    """Agents, topic families and MCP servers, with the live rate along each edge."""

    def __init__(self) -> None:
        self.nodes = ColumnDataSource(dict(x=[], y=[], name=[], kind=[], color=[], marker=[]))
        self.edges = ColumnDataSource(
            dict(x0=[], y0=[], x1=[], y1=[], xm=[], ym=[], width=[], head=[], alpha=[], rate=[],
                 label=[], source=[], target=[])
        )  # fmt: skip
        self.positions: dict[str, tuple[float, float]] = {}
        self._structure: tuple[frozenset[Any], frozenset[Any]] | None = None
        self.figure = _topology_figure(self.nodes, self.edges)
        self.pane = pn.pane.Bokeh(self.figure, sizing_mode="stretch_width")
        self.panel = pn.Card(self.pane, title="Topology", collapsible=False, **_CARD)

    def refresh(self, feed: StudioFeed) -> bool:
        """Update the sources in place; True when something changed."""
        rates = feed.edge_rates()
        nodes = dict(feed.nodes)
        structure = (frozenset(nodes.items()), frozenset(rates))
        changed = structure != self._structure
        if changed:  # positions only move when the graph itself changes
            self._structure = structure
            self.positions = layered_layout(nodes, rates)
            self.nodes.data = self._node_data(nodes)
        edges = self._edge_data(rates)
        if edges != self.edges.data:
            self.edges.data = edges
            changed = True
        return changed

    def _node_data(self, nodes: dict[str, str]) -> dict[str, list[Any]]:
        names = sorted(self.positions)
        kinds = [nodes[n] for n in names]
        return dict(
            x=[self.positions[n][0] for n in names],
            y=[self.positions[n][1] for n in names],
            name=names,
            kind=kinds,
            color=[KINDS.get(k, KINDS["agent"])[1] for k in kinds],
            marker=[KINDS.get(k, KINDS["agent"])[0] for k in kinds],
        )

    def _edge_data(self, rates: dict[tuple[str, str], float]) -> dict[str, list[Any]]:
        data: dict[str, list[Any]] = {key: [] for key in self.edges.data}
        for (a, b), rate in sorted(rates.items()):
            if a not in self.positions or b not in self.positions:
                continue
            (x0, y0), (x1, y1) = self.positions[a], self.positions[b]
            length = math.hypot(x1 - x0, y1 - y0) or 1.0
            back = min(0.12, length / 3) / length  # the arrowhead stops short of the node
            width = min(1.5 + 2 * math.log1p(rate), 10)
            values = dict(
                x0=x0, y0=y0, x1=x1 - (x1 - x0) * back, y1=y1 - (y1 - y0) * back,
                xm=(x0 + x1) / 2, ym=(y0 + y1) / 2, width=width, head=8 + 1.5 * width,
                alpha=0.75 if rate > 0 else 0.25, rate=round(rate, 2), label=_rate_label(rate),
                source=a, target=b,
            )  # fmt: skip
            for key, value in values.items():
                data[key].append(value)
        return data


def _topology_figure(nodes: ColumnDataSource, edges: ColumnDataSource) -> Any:
    fig = figure(
        height=560, sizing_mode="stretch_width", tools="pan,wheel_zoom,reset,save",
        toolbar_location="right", outline_line_color=None,
    )  # fmt: skip
    fig.x_range.range_padding = fig.y_range.range_padding = 0.25
    fig.axis.visible = False
    fig.grid.visible = False
    lines = fig.segment(
        "x0", "y0", "x1", "y1", source=edges, line_width="width", line_alpha="alpha",
        line_color="#78909c",
    )  # fmt: skip
    fig.add_layout(
        Arrow(
            end=VeeHead(size="head", fill_color="#455a64", line_color="#455a64"), source=edges,
            x_start="x0", y_start="y0", x_end="x1", y_end="y1", line_alpha=0,
        )
    )  # fmt: skip
    fig.text("xm", "ym", text="label", source=edges, text_font_size="9pt", text_color="#37474f",
             text_align="center", text_baseline="bottom", y_offset=-3)  # fmt: skip
    points = fig.scatter(
        "x", "y", source=nodes, marker="marker", size=20, fill_color="color",
        line_color="white", line_width=2, legend_field="kind",
    )  # fmt: skip
    fig.text("x", "y", text="name", source=nodes, text_font_size="9pt", text_align="center",
             text_baseline="top", y_offset=14)  # fmt: skip
    fig.add_tools(
        HoverTool(renderers=[points], tooltips=[("", "@name"), ("kind", "@kind")]),
        HoverTool(renderers=[lines], tooltips=[("", "@source → @target"), ("rate", "@rate /s")]),
    )
    fig.legend.location = "top_left"
    fig.legend.orientation = "horizontal"
    fig.legend.background_fill_alpha = 0.6
    return fig


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
        self.delivery = pn.widgets.Tabulator(
            pd.DataFrame(columns=DELIVERY_COLUMNS), disabled=True, selectable=False,
            show_index=False, layout="fit_data_stretch", max_height=160,
            sizing_mode="stretch_width",
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


class Dashboard(pn.viewable.Viewer):
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
        self.events = _Events()
        self.topology = _Topology()
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
        agents = agent_frame(self.feed.agents, time.time(), self._stale_after())
        with pn.io.hold():  # every change of this refresh goes to the page as one message
            self.header.refresh(self.feed, agents)
            self.agents.refresh(agents)
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
            self.refresh()
        except Exception:  # a bad refresh must not end the page's updates: log, go on
            log.exception("dashboard refresh failed")

    def _stale_after(self) -> float:
        runtime = self.feed.runtime
        interval = runtime.config.runtime.heartbeat_interval if runtime else DEFAULT_HEARTBEAT
        return STALE_BEATS * interval
