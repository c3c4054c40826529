"""The traces view: recent traces, one trace as per-agent lanes and as a flamegraph, span
search, a latency heatmap and the detail of a span, all read from the span store.

    Traces()                                     # the nearest project's [tracing] store_path
    Traces(store=".loom/traces.db").show_trace("621c")

It reads the SQLite file only (no bus): the list and the heatmap refresh every
``refresh_ms`` in a worker thread, so the page's event loop never waits on the disk.
A trace is listed once it has settled: no span of it ended in the last
:data:`SETTLE_S` seconds, so that every process's batch of its spans has arrived (they
are sent every 0.5 s). Clicking a trace (a row of the list, which the browser names by
its id, or a search result) draws it; selecting a span (a bar, or a search result)
shows its attributes, events, links and GenAI usage.
"""

from __future__ import annotations

import asyncio
import html
import importlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import panel as pn
from bokeh.core.property.descriptors import UnsetValueError
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    DataRange1d,
    FactorRange,
    HoverTool,
    LogColorMapper,
    NumeralTickFormatter,
    Range1d,
    SingleIntervalTicker,
)
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

from loom_kernel import LoomError, load_config
from loom_kernel.protocol import Span
from loom_kernel.tracing import SpanStore, TraceSummary

from .notebook import InlineViewer
from .tables import RowClicks
from .trace_data import (
    HEATMAP_BUCKET_S,
    HEATMAP_WINDOW,
    LABEL_PX,
    flame_labels,
    heatmap_cells,
    lane_rows,
    parse_attribute,
    span_agent,
    span_html,
    status_text,
    trace_layout,
)

__all__ = ["Traces"]

# Tabulator's JS is added to a page only if its model is imported when the page is made:
# the studio shows this view in a dynamic tab, created after that.
importlib.import_module("panel.models.tabulator")

MIN_REFRESH_MS = 1000  # the list and the heatmap are read at most once a second
RECENT_TRACES = 50
SETTLE_S = 1.5  # a trace is listed once no span of it ended for this long (complete)
SEARCH_LIMIT = 200
HEATMAP_SPANS = 20_000  # newest spans of the window read per refresh
HEATMAP_EVERY_S = 10.0  # the heatmap's buckets are 10 s: no point in reading it more often
STATUSES = ("any", "ok", "error", "unset")
OPEN_ROW_CSS = "background-color: #d6e4f5"  # the open trace's row in the list
ANY = "any"


@dataclass(frozen=True)
class _Snapshot:
    """What one refresh read from the store (in a worker thread)."""

    exists: bool
    count: int = 0
    summaries: tuple[TraceSummary, ...] = ()
    heatmap: tuple[Span, ...] | None = None  # None: not read this time
    now: float = 0.0


class Traces(InlineViewer):
    """The traces of a span store, for a notebook cell or the studio's Traces page.

    Args:
        store: a :class:`SpanStore` or the path of its file; ``None``: the nearest
            project's ``[tracing] store_path`` (``loom.toml`` found from the working folder).
        refresh_ms: how often the list of traces and the heatmap are read again (at least
            1000); 0 never (call :meth:`refresh`).

    >>> view = Traces(store=".loom/traces.db")     # doctest: +SKIP
    >>> view.show_trace("621c")                    # a unique prefix of a trace id
    """

    def __init__(
        self,
        store: SpanStore | str | Path | None = None,
        *,
        refresh_ms: int = 2000,
        agents: Callable[[], Collection[str]] | None = None,
        **params: Any,
    ):
        super().__init__(**params)
        #: only the traces these agents took part in (a tenant's view), read at each refresh
        self.only: Callable[[], Collection[str]] | None = agents
        if store is None:
            settings = load_config()
            store = settings.project_path(settings.tracing.store_path)
        self.store = store if isinstance(store, SpanStore) else SpanStore(store)
        self.trace_id: str | None = None
        self._agents: set[str] = set()
        self._listed: list[tuple[Any, ...]] = []
        self._spans: list[Span] = []
        self._heatmap_at = 0.0
        self._build()
        self.refresh()
        self._callback: Any = None
        self._period = max(MIN_REFRESH_MS, refresh_ms) if refresh_ms else 0

    # -- public ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the list of traces, the agents and the heatmap again (now, blocking)."""
        self._apply(self._read(heatmap=True))

    def show_trace(self, trace_id: str) -> Traces:
        """Draw one trace (a full id or a unique prefix) in the timeline and flamegraph.

        Raises:
            LoomError: no spans stored yet, no such trace, or an ambiguous prefix.
        """
        if not self.store.path.exists():
            raise LoomError(f"no spans stored yet in {self.store.path}")
        full = self.store.resolve(trace_id)
        spans = sorted(self.store.trace(full), key=lambda s: s.start_ns)  # as trace_layout
        if self.only is not None and not {span.agent for span in spans} & set(self.only()):
            raise LoomError(f"trace {full} is not one of this view's (no agent of it took part)")
        self.trace_id, self._spans = full, spans
        cols, links = trace_layout(spans, _plot_width(self.flamegraph))
        agents = list(dict.fromkeys(cols["agent"]))
        self.timeline.y_range.factors = agents[::-1]  # first agent to act at the top
        rows = max(lane_rows(spans)[1].values(), default=1)
        # 110 px: the axis, the title and the legend above the lanes
        self.timeline.height = min(900, max(200, 110 + len(agents) * max(28, rows * 16)))
        depth = max(cols["depth"], default=0)
        self.flamegraph.height = min(900, max(140, 60 + (depth + 1) * 24))
        self.spans_source.selected.indices = []
        self.spans_source.data = cols
        self.links_source.data = links
        self.recent.param.trigger("value")  # its row shows as the open one (_open_css)
        summary = self._summary_text(spans)
        self.trace_title.object = summary
        self.detail.object = f"<p>{html.escape(summary)}</p><p>Select a span.</p>"
        return self

    def search(self) -> None:
        """Run the span search with the filters' current values."""
        self.search_message.visible = False
        if not self.store.path.exists():
            return self._search_error(f"No spans stored yet in {self.store.path}.")
        w = self.filters
        minutes = w["minutes"].value
        try:
            spans = self.store.query(
                name=w["name"].value.strip() or None,
                agent=None if w["agent"].value == ANY else w["agent"].value,
                status=None if w["status"].value == ANY else w["status"].value,
                min_duration_ms=w["min_ms"].value,
                attribute=parse_attribute(w["attribute"].value),
                since=timedelta(minutes=minutes) if minutes else None,
                agents=self._only(),
                limit=SEARCH_LIMIT,
            )
        except LoomError as exc:
            return self._search_error(str(exc))
        self.results.value = _span_frame(spans)
        self.results_title.object = f"{len(spans)} spans" + (
            f" (the newest {SEARCH_LIMIT})" if len(spans) == SEARCH_LIMIT else ""
        )

    # -- reading and applying -------------------------------------------------------

    def _read(self, heatmap: bool) -> _Snapshot:
        if not self.store.path.exists():  # reading would create the file
            return _Snapshot(exists=False)
        now = datetime.now().timestamp()
        spans = None
        only = self._only()
        if heatmap:
            since = now - HEATMAP_WINDOW.total_seconds()
            spans = tuple(self.store.query(since=since, agents=only, limit=HEATMAP_SPANS))
        return _Snapshot(
            exists=True,
            count=self.store.count(),
            summaries=tuple(self.store.traces(limit=RECENT_TRACES, settled=SETTLE_S, agents=only)),
            heatmap=spans,
            now=now,
        )

    def _only(self) -> list[str] | None:
        return sorted(self.only()) if self.only is not None else None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        heatmap = loop.time() - self._heatmap_at >= HEATMAP_EVERY_S
        if heatmap:
            self._heatmap_at = loop.time()
        snapshot = await asyncio.to_thread(self._read, heatmap)
        with self.updating_page():  # in a notebook: once the page shows it, in order
            self._apply(snapshot)

    def _apply(self, snap: _Snapshot) -> None:
        if not snap.exists:
            self.header.object = (
                f"**No spans stored yet** in `{self.store.path}`: they appear here once "
                "agents run with tracing on (the process running the bus stores them)."
            )
            return
        self.header.object = (
            f"**{snap.count:,} spans** in `{self.store.path}` · "
            f"read {datetime.fromtimestamp(snap.now):%H:%M:%S} · a trace is listed once "
            f"no span of it ended for {SETTLE_S:g} s"
        )
        if self.only is not None:
            self.header.object += " · this view lists only the traces its agents took part in"
        for summary in snap.summaries:
            self._agents.update(summary.agents)
        agents = [ANY, *sorted(self._agents)]
        if self.filters["agent"].options != agents:
            self.filters["agent"].options = agents
        listed = [(s.trace_id, s.spans, s.errors, s.duration_ms) for s in snap.summaries]
        if listed != self._listed:
            self._listed = listed
            self.recent.value = _trace_frame(snap.summaries)
            shown = next((s for s in snap.summaries if s.trace_id == self.trace_id), None)
            if self.trace_id is None and snap.summaries:
                # the fullest recent workflow: a telling one to begin with
                fullest = max(snap.summaries, key=lambda s: (s.spans, s.start_ns))
                self._open(fullest.trace_id)
            elif shown is not None and shown.spans != len(self._spans):  # still growing
                self._reload()
        if snap.heatmap is not None:
            cells = heatmap_cells(snap.heatmap, now=snap.now)
            self._draw_heatmap(cells, snap.now, len(snap.heatmap))

    def _draw_heatmap(self, cells: dict[str, list[Any]], now: float, read: int) -> None:
        shift = (datetime.now().astimezone().utcoffset() or timedelta()).total_seconds()
        ms = [(t + HEATMAP_BUCKET_S / 2 + shift) * 1000 for t in cells["t"]]  # local time
        end = (now + shift) * 1000
        self.heatmap.x_range.start = end - HEATMAP_WINDOW.total_seconds() * 1000
        self.heatmap.x_range.end = end
        names = sorted(set(cells["name"]), reverse=True)
        self.heatmap.y_range.factors = names
        self.heatmap.height = min(900, max(180, 90 + 22 * len(names)))
        if cells["p95"]:
            low, high = max(min(cells["p95"]), 1e-3), max(max(cells["p95"]), 1e-3)
            self.mapper.low, self.mapper.high = low, max(high, low * 10)
        self.heatmap_source.data = {
            **cells,
            "x": ms,
            "when": [f"{datetime.fromtimestamp(t):%H:%M:%S}" for t in cells["t"]],
            "p95_color": [max(v, 1e-3) for v in cells["p95"]],
        }
        cut = f"; the newest {read:,} spans" if read >= HEATMAP_SPANS else ""
        self.heatmap_title.object = (
            f"p95 duration per span name and {HEATMAP_BUCKET_S} s bucket, last "
            f"{HEATMAP_WINDOW.total_seconds() / 60:.0f} minutes ({len(names)} names with the "
            f"most total time{cut}); hover for count and mean."
        )

    # -- callbacks --------------------------------------------------------------------

    # Panel runs widget callbacks without the Bokeh document's lock: the figures are
    # changed on the next tick, under the lock (at once when there is no server).

    def _on_trace_click(self, trace_id: str) -> None:
        if trace_id != self.trace_id:
            pn.state.execute(partial(self._open, trace_id), schedule=True)

    def _on_result_row(self, event: Any) -> None:
        trace_id = _selected(self.results, "trace_id")
        if trace_id:
            span_id = _selected(self.results, "span_id")
            pn.state.execute(partial(self._open, trace_id, span_id), schedule=True)

    def _on_flame_width(self, attr: str, old: Any, new: Any) -> None:
        """The page drew the flamegraph at a new width: labels as long as its bars allow."""
        if self._spans and new:
            self.spans_source.data["label"] = flame_labels(self._spans, new)

    def _on_span_tap(self, attr: str, old: list[int], new: list[int]) -> None:
        if new and new[0] < len(self._spans):
            self.detail.object = span_html(self._spans[new[0]], self._spans[0].start_ns)

    def _open(self, trace_id: str, span_id: str | None = None) -> None:
        try:
            if trace_id != self.trace_id:
                self.show_trace(trace_id)
        except LoomError as exc:  # purged since it was listed
            self.detail.object = f"<p>{html.escape(str(exc))}</p>"
            return
        ids = self.spans_source.data["span_id"]
        if span_id in ids:
            self.spans_source.selected.indices = [ids.index(span_id)]

    def _reload(self) -> None:
        """Draw the open trace again (spans arrived), keeping the selected span."""
        data, indices = self.spans_source.data, self.spans_source.selected.indices
        selected = data["span_id"][indices[0]] if indices else None
        trace_id, self.trace_id = self.trace_id, None
        self._open(trace_id, selected)

    def _search_error(self, message: str) -> None:
        self.search_message.object = message
        self.search_message.visible = True
        self.results.value = _span_frame([])
        self.results_title.object = ""

    def _summary_text(self, spans: list[Span]) -> str:
        agents = {span_agent(s) for s in spans}
        errors = sum(s.status == "error" for s in spans)
        root = next((s.name for s in spans if s.parent_id is None), spans[0].name if spans else "")
        duration = (max(s.end_ns for s in spans) - spans[0].start_ns) / 1e6 if spans else 0.0
        return (
            f"trace {self.trace_id} · {root} · {len(spans)} spans · {len(agents)} agents · "
            f"{duration:,.2f} ms · {errors} errors"
        )

    # -- layout ---------------------------------------------------------------------

    def _build(self) -> None:
        self.header = pn.pane.Markdown(margin=(0, 10))
        # no selection: Tabulator scrolls a selected row to the middle each time the list
        # changes; the open trace's row is marked by its style instead
        # the list changes every refresh: a click names its trace, not its row's position
        self.recent_clicks = RowClicks("trace_id", self._on_trace_click)
        self.recent = _tabulator(
            _trace_frame([]), height=250, hidden=["trace_id"], clicks=self.recent_clicks
        )
        self.recent.style.apply(lambda row: _open_css(row, self.trace_id), axis=1)
        self.trace_title = pn.pane.Str("", styles={"font-size": "13px"}, margin=(4, 10))
        self.spans_source = ColumnDataSource(data=trace_layout([])[0])
        self.spans_source.selected.on_change("indices", self._on_span_tap)
        self.links_source = ColumnDataSource(data={"x0": [], "y0": [], "x1": [], "y1": []})
        self.timeline, self.flamegraph = self._trace_figures()
        self.flamegraph.on_change("inner_width", self._on_flame_width)
        self.heatmap_source = ColumnDataSource(
            data={k: [] for k in ("name", "t", "count", "p95", "mean", "x", "when", "p95_color")}
        )
        self.mapper = LogColorMapper(palette=Viridis256, low=0.01, high=1000)
        self.heatmap = self._heatmap_figure()
        self.heatmap_title = pn.pane.Markdown("", margin=(0, 10))
        self.detail = pn.pane.HTML("<p>Select a trace, then a span.</p>")
        stretch = {"sizing_mode": "stretch_width"}
        self.tabs = pn.Tabs(
            (
                "Trace",
                pn.Column(
                    self.trace_title, _pane(self.timeline), _pane(self.flamegraph), **stretch
                ),
            ),
            ("Search", self._search_panel()),
            ("Latency", pn.Column(self.heatmap_title, _pane(self.heatmap), **stretch)),
            **stretch,
        )
        self._layout = pn.Row(
            pn.Column(self.header, self.recent, self.recent_clicks.panel, self.tabs, **stretch),
            pn.Column(
                pn.pane.Markdown("**Span**", margin=(0, 10)),
                self.detail,
                width=400,
                styles={"border-left": "1px solid #ddd"},
            ),
            **stretch,
        )

    def _search_panel(self) -> pn.Column:
        self.filters = {
            "name": pn.widgets.TextInput(label="Name contains", placeholder="chat", width=170),
            "agent": pn.widgets.Select(label="Agent", options=[ANY], value=ANY, width=150),
            "status": pn.widgets.Select(label="Status", options=list(STATUSES), width=100),
            "min_ms": pn.widgets.FloatInput(
                label="Min duration (ms)", value=None, start=0, placeholder="any", width=130
            ),
            "attribute": pn.widgets.TextInput(
                label="Attribute key=value", placeholder="gen_ai.request.model=gpt-4o", width=260
            ),
            "minutes": pn.widgets.FloatInput(
                label="Last minutes", value=None, start=0, placeholder="all", width=110
            ),
        }
        for widget in self.filters.values():
            widget.param.watch(lambda event: self.search(), "value")
        button = pn.widgets.Button(label="Search", color="primary", width=90, align="end")
        button.on_click(lambda event: self.search())
        self.search_message = pn.pane.Alert(alert_type="danger", visible=False)
        self.results_title = pn.pane.Markdown("", margin=(0, 10))
        self.results = _tabulator(_span_frame([]), height=380, hidden=["trace_id", "span_id"])
        self.results.param.watch(self._on_result_row, "selection")
        return pn.Column(
            pn.Row(*self.filters.values(), button),
            self.search_message,
            self.results_title,
            self.results,
            sizing_mode="stretch_width",
        )

    def _trace_figures(self) -> tuple[Any, Any]:
        tools = "xpan,xwheel_zoom,box_zoom,tap,reset"
        hover = [
            ("span", "@name"),
            ("agent", "@agent"),
            ("kind", "@kind"),
            ("start", "+@start{0,0.000} ms"),
            ("duration", "@duration{0,0.000} ms"),
            ("status", "@status"),
        ]
        x_range = DataRange1d(start=0)
        timeline = figure(
            title="Timeline: one lane per agent (colour: kind; red: error)",
            y_range=FactorRange(), x_range=x_range, height=200, tools=tools,
            sizing_mode="stretch_width", x_axis_label="ms since the trace started",
            min_border_left=120,
        )  # fmt: skip
        timeline.segment("x0", "y0", "x1", "y1", source=self.links_source, color="#999", alpha=0.5)
        bars = timeline.hbar(
            y="lane", left="start", right="right", height="height", source=self.spans_source,
            fill_color="color", line_color="color", legend_field="legend",
            selection_line_color="black", nonselection_fill_alpha=0.6,
            nonselection_line_alpha=0.6,
        )  # fmt: skip
        timeline.add_tools(HoverTool(renderers=[bars], tooltips=hover))
        legend = timeline.legend[0]
        legend.orientation, legend.location = "horizontal", "top_left"
        timeline.add_layout(legend, "above")  # above: the two figures' x axes line up
        timeline.ygrid.grid_line_color = None
        flame = figure(
            title="Flamegraph: spans by depth (width: duration; colour: agent; red: error)",
            y_range=DataRange1d(flipped=True), x_range=x_range, height=200, tools=tools,
            sizing_mode="stretch_width", y_axis_label="depth", min_border_left=120,
        )  # fmt: skip
        boxes = flame.hbar(
            y="depth", left="start", right="right", height=0.9, source=self.spans_source,
            fill_color="flame_color", line_color="white", selection_line_color="black",
            nonselection_fill_alpha=0.6,
        )  # fmt: skip
        flame.text(
            x="start", y="depth", text="label", source=self.spans_source, x_offset=3,
            text_baseline="middle", text_font_size="10px", text_color="label_color",
            nonselection_text_alpha=1.0,
        )  # fmt: skip
        flame.add_tools(HoverTool(renderers=[boxes], tooltips=[*hover, ("depth", "@depth")]))
        flame.yaxis.ticker = SingleIntervalTicker(interval=1)
        flame.ygrid.grid_line_color = None
        return timeline, flame

    def _heatmap_figure(self) -> Any:
        fig = figure(
            y_range=FactorRange(), x_range=Range1d(0, 1), x_axis_type="datetime", height=300,
            sizing_mode="stretch_width", tools="xpan,box_zoom,reset", x_axis_label="time",
        )  # fmt: skip
        fig.rect(
            x="x", y="name", width=HEATMAP_BUCKET_S * 1000 * 0.95, height=0.9,
            source=self.heatmap_source, line_color=None,
            fill_color={"field": "p95_color", "transform": self.mapper},
        )  # fmt: skip
        fig.add_tools(
            HoverTool(
                tooltips=[
                    ("span", "@name"),
                    ("bucket", "@when"),
                    ("spans", "@count"),
                    ("p95", "@p95{0,0.000} ms"),
                    ("mean", "@mean{0,0.000} ms"),
                ]
            )
        )
        fig.add_layout(
            ColorBar(
                color_mapper=self.mapper, title="p95 ms", width=12,
                formatter=NumeralTickFormatter(format="0,0.[000]"),
            ),
            "right",
        )  # fmt: skip
        fig.grid.grid_line_color = None
        return fig

    def __panel__(self) -> pn.viewable.Viewable:
        # refreshing starts when the view is shown (a served page: once it has loaded)
        if self._period and self._callback is None:
            pn.state.onload(self._start)
        return self._layout

    def _start(self) -> None:
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self._tick, period=self._period)

    @property
    def running(self) -> bool:
        """True while the view refreshes itself."""
        return self._callback is not None

    def stop(self) -> None:
        """Stop refreshing (a notebook cell you are done with)."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None


def _plot_width(fig: Any) -> float:
    """The width of a figure's plot area in px, as the page reports it once drawn."""
    try:
        return float(fig.inner_width or LABEL_PX)
    except UnsetValueError:  # not drawn yet
        return LABEL_PX


def _pane(fig: Any) -> pn.pane.Bokeh:
    return pn.pane.Bokeh(fig, sizing_mode="stretch_width")


def _tabulator(
    frame: pd.DataFrame, *, height: int, hidden: list[str], clicks: RowClicks | None = None
) -> pn.widgets.Tabulator:
    """A table; with ``clicks``, rows are clicked by key and never selected."""
    configuration = {"columnDefaults": {"tooltip": True}}  # a cut cell shows all on hover
    return pn.widgets.Tabulator(
        frame, selectable=1 if clicks is None else False, disabled=True, show_index=False,
        height=height, hidden_columns=hidden, sizing_mode="stretch_width",
        layout="fit_data_stretch", pagination=None,
        configuration=clicks.configuration(configuration) if clicks else configuration,
    )  # fmt: skip


def _open_css(row: pd.Series, trace_id: str | None) -> list[str]:
    return [OPEN_ROW_CSS if row["trace_id"] == trace_id else ""] * len(row)


def _selected(table: pn.widgets.Tabulator, column: str) -> str | None:
    if not table.selection or table.selection[0] >= len(table.value):
        return None
    return str(table.value[column].iloc[table.selection[0]])


def _trace_frame(summaries: Sequence[TraceSummary]) -> pd.DataFrame:
    return _frame(
        {
            "trace": [s.trace_id[:12] for s in summaries],
            "started": [f"{datetime.fromtimestamp(s.start_ns / 1e9):%H:%M:%S}" for s in summaries],
            "root": [s.root for s in summaries],
            "spans": pd.Series([s.spans for s in summaries], dtype="int64"),
            "errors": pd.Series([s.errors for s in summaries], dtype="int64"),
            "duration ms": pd.Series([s.duration_ms for s in summaries], dtype="float64"),
            "agents": [", ".join(s.agents) for s in summaries],  # last: the longest text
            "trace_id": [s.trace_id for s in summaries],
        }
    )


def _span_frame(spans: Sequence[Span]) -> pd.DataFrame:
    return _frame(
        {
            "started": [
                f"{datetime.fromtimestamp(s.start_ns / 1e9):%H:%M:%S.%f}"[:-3] for s in spans
            ],
            "trace": [s.trace_id[:12] for s in spans],
            "name": [s.name for s in spans],
            "agent": [span_agent(s) for s in spans],
            "kind": [s.kind for s in spans],
            "status": [status_text(s) for s in spans],
            "duration ms": pd.Series([round(s.duration_ms, 3) for s in spans], dtype="float64"),
            "trace_id": [s.trace_id for s in spans],
            "span_id": [s.span_id for s in spans],
        }
    )


def _frame(columns: dict[str, list[str] | pd.Series]) -> pd.DataFrame:
    """Typed even when empty (Tabulator picks a column's formatter from its first dtype):
    lists are text, Series keep their dtype."""
    return pd.DataFrame(
        {
            name: values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
            for name, values in columns.items()
        }
    )
