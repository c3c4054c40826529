"""The History view: a time slider over what the event log recorded, the rate of events
over time, the events and the traces of the window chosen, and the ``loom replay``
command that publishes that window again into a namespace.

    History()                                    # the nearest project's loom.toml
    History(rt.config)                           # a running project's event log and spans
    History(".loom/events.db", store=".loom/traces.db")

It reads the files only (read-only SQLite, :mod:`~loom_studio.history_data`), in a worker
thread: the log's extent and rate every ``refresh_ms``, the window's events and traces
when the window or the topic filter changes. A window that reaches the newest event
follows the log as it grows. With ``[eventlog] enabled = false`` (the default) or an
empty log it says how to turn the log on.
"""

from __future__ import annotations

import asyncio
import html
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import panel as pn
from bokeh.models import BoxAnnotation, ColumnDataSource, HoverTool, Range1d
from bokeh.plotting import figure

from loom_kernel import LoomConfig, LoomError, SpanStore, TopicError, load_config

from .history_data import (
    EventRow,
    Extent,
    Rate,
    TraceRow,
    Window,
    axis_ms,
    bucket_text,
    clock,
    epoch_ns,
    event_detail,
    event_frame,
    event_rate,
    local_time,
    log_extent,
    matching_streams,
    open_read_only,
    parse_namespace,
    parse_patterns,
    replay_command,
    trace_frame,
    window_count,
    window_events,
    window_traces,
)
from .notebook import InlineViewer
from .tables import RowClicks

__all__ = ["History"]

# Tabulator's JS is added to a page only if its model is imported when the page is made
importlib.import_module("panel.models.tabulator")

TICK_MS = 250  # how soon a new window or filter is read
MIN_REFRESH_MS = 1000
MAX_EVENTS = 500  # events the table shows: the window's newest
MAX_TRACES = 100
MS = 1_000_000
ENABLE_HINT = (
    "Add this to the project's `loom.toml` and restart the process that runs the bus "
    "(or run `loom log` beside it with `embedded = false`):\n\n"
    "```toml\n[eventlog]\nenabled = true\n```\n\n"
    "The studio's docs: `docs/durability.md`, section *Event log*."
)


@dataclass(frozen=True)
class _Overview:
    """What one refresh read: the log's extent and rate (None: no file or no events)."""

    extent: Extent | None
    rate: Rate | None


@dataclass(frozen=True)
class _Contents:
    """What the window holds (read in a worker thread)."""

    window: Window
    events: list[EventRow]
    count: int
    traces: list[TraceRow] | None  # None: no span store


class History(InlineViewer):
    """A time slider over the event log, its events, traces and replay command.

    Args:
        log: a :class:`LoomConfig` (its ``[eventlog]`` and ``[tracing]``), the event log's
            file, or an object with its ``path`` (``rt.event_log``); ``None``: the
            nearest project's ``loom.toml``.
        store: the span store (a :class:`SpanStore` or its file); ``None``: the
            config's ``[tracing] store_path`` (beside a log given as a file:
            ``traces.db`` in its folder).
        on_trace: called with a trace id when a trace is clicked (the studio opens it
            in its Traces tab); ``None``: the trace is drawn below the list.
        refresh_ms: how often the log's extent and rate are read again (at least 1000);
            0 never (call :meth:`refresh`).

    >>> view = History(rt.config)                                   # doctest: +SKIP
    >>> view.set_window(time.time() - 60, time.time(), topics="orders.*")
    >>> view.command.value
    "loom replay --from 2026-... --to 2026-... --topics 'orders.*' --into replay"
    """

    def __init__(
        self,
        log: LoomConfig | str | os.PathLike[str] | Any = None,
        store: SpanStore | str | os.PathLike[str] | None = None,
        *,
        on_trace: Callable[[str], None] | None = None,
        refresh_ms: int = 5000,
        **params: Any,
    ):
        super().__init__(**params)
        self.path, self.enabled, default_store = _sources(log)
        store = default_store if store is None else store
        self.store_path = Path(store.path if isinstance(store, SpanStore) else store)
        self.on_trace = on_trace
        self.extent: Extent | None = None
        self.window: Window | None = None
        self._dirty = False
        self._busy = False
        self._setting = False  # the slider is being set from here, not dragged
        self._refresh_at = 0.0
        self._period = max(MIN_REFRESH_MS, refresh_ms) if refresh_ms else 0
        self._callback: Any = None
        self._trace_view: Any = None
        self._build()
        self.refresh()

    # -- public ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the log's extent and rate, and the window's contents, again (now)."""
        try:
            self._apply_overview(self._read_overview(self._patterns()))
            if self.window is not None:
                self._dirty = False
                self._apply_contents(self._read_contents(self.window))
        except LoomError as exc:  # the file went, or is not a log: said on the page
            self._unreadable(exc)

    def set_window(self, start: float, end: float, topics: str | None = None) -> None:
        """Show the events between ``start`` and ``end`` (epoch seconds), on ``topics``
        (comma-separated patterns; None: the filter as it is), and read them now.

        Raises:
            TopicError: a bad pattern (the filter's box says why too).
        """
        if topics is not None:
            self.pattern.value = topics
            if self.error.visible:
                raise TopicError(self.error.object)
        self._set_window(int(start * 1e9), int(end * 1e9))
        self.refresh()

    def show_event(self, pos: int) -> dict[str, Any] | None:
        """Show the whole event at log position ``pos`` beside the table (as a click)."""
        with open_read_only(self.path) as db:
            detail = event_detail(db, pos)
        self.payload.object = detail or {"pos": pos, "gone": "purged since it was listed"}
        return detail

    def open_trace(self, trace_id: str) -> None:
        """Open a trace: in the studio's Traces tab, or drawn below the list."""
        if self.on_trace is not None:
            self.on_trace(trace_id)
            return
        if self._trace_view is None:
            from .traces import Traces  # the traces view only when a trace is opened

            self._trace_view = Traces(store=self.store_path, refresh_ms=0)
            self.trace_area.objects = [self._trace_view]
        try:
            self._trace_view.show_trace(trace_id)
        except LoomError as exc:  # purged since it was listed
            self.trace_area.objects = [pn.pane.Alert(str(exc), alert_type="warning")]
            self._trace_view = None

    # -- reading (a worker thread, or now) ------------------------------------------

    def _patterns(self) -> tuple[str, ...]:
        return self.window.patterns if self.window else parse_patterns(self.pattern.value)

    def _read_overview(self, patterns: tuple[str, ...]) -> _Overview:
        if not self.enabled or not self.path.is_file():
            return _Overview(None, None)
        with open_read_only(self.path) as db:
            extent = log_extent(db)
            if extent is None:
                return _Overview(None, None)
            streams = matching_streams(db, patterns)
            return _Overview(extent, event_rate(db, extent.first_ns, extent.last_ns, streams))

    def _read_contents(self, window: Window) -> _Contents:
        with open_read_only(self.path) as db:
            streams = matching_streams(db, window.patterns)
            events = window_events(db, window, streams, MAX_EVENTS)
            count = window_count(db, window, streams)
        traces = None
        if self.store_path.is_file():
            with open_read_only(self.store_path) as spans:
                traces = window_traces(spans, window, MAX_TRACES)
        return _Contents(window, events, count, traces)

    async def _tick(self) -> None:
        if self._busy:  # the previous read is still going
            return
        self._busy = True
        try:
            loop = asyncio.get_running_loop()
            if not self._refresh_at or (self._period and loop.time() >= self._refresh_at):
                self._refresh_at = loop.time() + (self._period or 1e9) / 1000
                overview = await asyncio.to_thread(self._read_overview, self._patterns())
                with self.updating_page():
                    self._apply_overview(overview)
            if self._dirty and self.window is not None:
                self._dirty = False
                contents = await asyncio.to_thread(self._read_contents, self.window)
                with self.updating_page():
                    self._apply_contents(contents)
        except LoomError as exc:  # the file went, or is not a log: said on the page
            self._unreadable(exc)
        finally:
            self._busy = False

    def _unreadable(self, exc: LoomError) -> None:
        self.header.object = f"**Cannot read the event log**: {html.escape(str(exc))}"

    # -- applying -------------------------------------------------------------------

    def _apply_overview(self, overview: _Overview) -> None:
        extent = overview.extent
        self.notice.visible = extent is None
        self.body.visible = extent is not None
        if extent is None:
            self.extent = None
            self.notice.object = self._notice_text()
            self.header.object = ""
            return
        previous, self.extent = self.extent, extent
        self.header.object = (
            f"**{extent.events:,} events** in `{self.path}`, from "
            f"{clock(extent.first_ns, True)} to {clock(extent.last_ns, True)}"
        )
        start_ms, end_ms = extent.first_ns // MS, -(-extent.last_ns // MS)
        self.slider.param.update(
            start=local_time(start_ms * MS),
            end=local_time(max(end_ms, start_ms + 1) * MS),
            step=max(1, (overview.rate.width_ns if overview.rate else MS) // 10 // MS),
            format="%Y-%m-%d %H:%M:%S" if self._with_date() else "%H:%M:%S.%3N",
        )
        window = self.window
        if window is None:
            self._set_window(start_ms * MS, end_ms * MS)
        elif previous is not None and window.end_ns >= previous.last_ns:  # following the end
            self._set_window(max(window.start_ns, start_ms * MS), end_ms * MS)
        if overview.rate is not None:
            self._draw_rate(overview.rate)

    def _notice_text(self) -> str:
        if not self.enabled:
            return f"**The event log is off** in this project.\n\n{ENABLE_HINT}"
        return (
            f"**No events recorded yet** in `{self.path}`: the log fills while the project "
            "runs with the event log on. If it is not on:\n\n" + ENABLE_HINT
        )

    def _draw_rate(self, rate: Rate) -> None:
        seconds = rate.width_ns / 1e9
        shown = rate.matched if rate.matched is not None else rate.counts
        self.rate_source.data = {
            "x": [axis_ms(t + rate.width_ns // 2) for t in rate.starts],
            "all": [n / seconds for n in rate.counts],
            "matched": [n / seconds for n in shown],
            "count": shown,
            "when": [clock(t, False) for t in rate.starts],
        }
        self.rate_bars.glyph.width = rate.width_ns / MS * 0.9
        self.all_bars.glyph.width = rate.width_ns / MS * 0.9
        self.all_bars.visible = rate.matched is not None
        if self.extent is not None:
            pad = rate.width_ns // MS
            self.rate_figure.x_range.start = axis_ms(rate.starts[0]) - pad / 2
            self.rate_figure.x_range.end = axis_ms(rate.starts[-1]) + pad * 1.5
        patterns = ", ".join(self.window.patterns) if self.window else ""
        self.rate_figure.title.text = f"Events per second, {bucket_text(seconds)} buckets" + (
            f" (blue: on {patterns}; grey: all)" if rate.matched is not None else ""
        )

    def _apply_contents(self, contents: _Contents) -> None:
        window = contents.window
        self.events.value = event_frame(contents.events, self._with_date())
        shown = len(contents.events)
        on = f" on `{', '.join(window.patterns)}`" if window.patterns else ""
        self.events_title.object = (
            f"**Events**{on}: showing {shown:,} of {contents.count:,} in the window"
            + (f" (the newest {MAX_EVENTS})" if contents.count > shown else "")
            + ". Click one for its whole payload."
        )
        if contents.traces is None:
            self.traces_title.object = f"**Traces**: no span store at `{self.store_path}`."
            self.traces.value = trace_frame([], False)
            return
        self.traces.value = trace_frame(contents.traces, self._with_date())
        cut = f" (the newest {MAX_TRACES})" if len(contents.traces) >= MAX_TRACES else ""
        self.traces_title.object = (
            f"**Traces** with a span starting in the window: {len(contents.traces):,}{cut}. "
            "Click one to open it."
        )

    def _with_date(self) -> bool:
        extent = self.extent
        return extent is not None and (
            local_time(extent.first_ns).date() != local_time(extent.last_ns).date()
            or local_time(extent.first_ns).date() != datetime.now().date()
        )

    # -- the window -----------------------------------------------------------------

    def _set_window(self, start_ns: int, end_ns: int) -> None:
        """Select ``start_ns`` to ``end_ns`` (within the log): the slider, the plot's
        shading and the command follow, the contents are read on the next tick."""
        if self.extent is not None:
            low, high = self.extent.first_ns // MS * MS, -(-self.extent.last_ns // MS) * MS
            start_ns, end_ns = max(low, min(start_ns, high)), max(low, min(end_ns, high))
        start_ns, end_ns = min(start_ns, end_ns), max(start_ns, end_ns)
        try:
            patterns = parse_patterns(self.pattern.value)
        except TopicError:
            patterns = self.window.patterns if self.window else ()
        self.window = Window(start_ns, end_ns, patterns)
        value = (local_time(start_ns), local_time(end_ns))
        if self.slider.value != value:
            self._setting = True
            try:
                self.slider.value = value
            finally:
                self._setting = False
        self.shade.left, self.shade.right = axis_ms(start_ns), axis_ms(end_ns)
        self._write_command()
        self._dirty = True

    def _write_command(self) -> None:
        if self.window is None:
            return
        try:
            namespace = parse_namespace(self.namespace.value)
        except LoomError as exc:
            self.command_error.object = str(exc)
            self.command_error.visible = True
            return
        self.command_error.visible = False
        self.command.value = replay_command(self.window, namespace)

    def _on_slider(self, event: Any) -> None:
        if event.new and not self._setting:
            start, end = event.new
            self._set_window(epoch_ns(start), epoch_ns(end))

    def _on_pattern(self, event: Any) -> None:
        try:
            patterns = parse_patterns(event.new)
        except TopicError as exc:
            self.error.object = str(exc)
            self.error.visible = True
            return
        self.error.visible = False
        if self.window is not None and patterns != self.window.patterns:
            self.window = Window(self.window.start_ns, self.window.end_ns, patterns)
            self._write_command()
            self._dirty = True
            self._refresh_at = 0.0  # the rate of the matching events, on the next tick

    def _on_whole_log(self, event: Any) -> None:
        if self.extent is not None:
            self._set_window(self.extent.first_ns, self.extent.last_ns + MS)

    def _on_event_click(self, pos: str) -> None:
        try:
            self.show_event(int(pos))
        except LoomError as exc:
            self.payload.object = {"error": str(exc)}

    def _on_trace_click(self, trace_id: str) -> None:
        # the trace's figures are Bokeh models: changed under the document's lock
        pn.state.execute(partial(self.open_trace, trace_id), schedule=True)

    # -- layout ---------------------------------------------------------------------

    def _build(self) -> None:
        self.header = pn.pane.Markdown(margin=(0, 10))
        self.notice = pn.pane.Alert(alert_type="info", visible=False, margin=(5, 10))
        self.pattern = pn.widgets.TextInput(
            label="Topics (patterns, comma-separated)", placeholder="orders.*, market.price.*",
            width=320,
        )  # fmt: skip
        self.pattern.param.watch(self._on_pattern, "value")
        self.error = pn.pane.Alert(alert_type="danger", visible=False, margin=(0, 10))
        whole = pn.widgets.Button(label="Whole log", width=110, align="end")
        whole.on_click(self._on_whole_log)
        self.rate_source = ColumnDataSource(
            data={k: [] for k in ("x", "all", "matched", "count", "when")}
        )
        self.rate_figure = self._rate_figure()
        self.slider = pn.widgets.DatetimeRangeSlider(
            label="Window", start=datetime(2000, 1, 1), end=datetime(2000, 1, 2),
            format="%H:%M:%S.%3N", sizing_mode="stretch_width", margin=(0, 25),
        )  # fmt: skip
        self.slider.param.watch(self._on_slider, "value_throttled")
        self.body = pn.Column(
            pn.Row(self.pattern, whole),
            self.error,
            pn.pane.Bokeh(self.rate_figure, sizing_mode="stretch_width"),
            self.slider,
            self._command_row(),
            self._tables(),
            sizing_mode="stretch_width",
        )
        self._layout = pn.Column(self.header, self.notice, self.body, sizing_mode="stretch_width")

    def _command_row(self) -> pn.Column:
        self.namespace = pn.widgets.TextInput(label="Replay into", value="replay", width=140)
        self.namespace.param.watch(lambda event: self._write_command(), "value")
        self.command = pn.widgets.TextInput(
            label="Replay this window (run it in the project's folder)",
            sizing_mode="stretch_width", styles={"font-family": "monospace"},
        )  # fmt: skip
        copy = pn.widgets.Button(label="Copy", width=80, align="end")
        copy.js_on_click(
            args={"command": self.command},
            code="navigator.clipboard && navigator.clipboard.writeText(command.value)",
        )
        self.command_error = pn.pane.Alert(alert_type="danger", visible=False, margin=(0, 10))
        return pn.Column(
            pn.Row(self.namespace, self.command, copy, sizing_mode="stretch_width"),
            self.command_error,
            sizing_mode="stretch_width",
        )

    def _tables(self) -> pn.Row:
        self.events_title = pn.pane.Markdown(margin=(0, 10))
        self.event_clicks = RowClicks("pos", self._on_event_click)
        self.events = _tabulator(event_frame([], False), 360, ["pos"], self.event_clicks)
        self.payload = pn.pane.JSON(
            {}, depth=3, height=360, sizing_mode="stretch_width", styles={"overflow": "auto"}
        )
        self.traces_title = pn.pane.Markdown(margin=(0, 10))
        self.trace_clicks = RowClicks("trace_id", self._on_trace_click)
        self.traces = _tabulator(trace_frame([], False), 220, ["trace_id"], self.trace_clicks)
        self.trace_area = pn.Column(sizing_mode="stretch_width")
        stretch = {"sizing_mode": "stretch_width"}
        return pn.Row(
            pn.Column(
                self.events_title, self.events, self.event_clicks.panel,
                self.traces_title, self.traces, self.trace_clicks.panel, self.trace_area,
                **stretch,
            ),
            pn.Column(
                pn.pane.Markdown("**Event**", margin=(0, 10)), self.payload,
                width=400, styles={"border-left": "1px solid #ddd"},
            ),
            **stretch,
        )  # fmt: skip

    def _rate_figure(self) -> Any:
        fig = figure(
            title="Events per second", x_axis_type="datetime", x_range=Range1d(0, 1),
            height=180, sizing_mode="stretch_width", tools="xpan,xwheel_zoom,reset",
            y_axis_label="events/s", toolbar_location="right",
        )  # fmt: skip
        self.all_bars = fig.vbar(
            x="x", top="all", width=1.0, source=self.rate_source, color="#c8c8c8", visible=False
        )
        self.rate_bars = fig.vbar(x="x", top="matched", width=1.0, source=self.rate_source)
        fig.add_tools(
            HoverTool(
                renderers=[self.rate_bars],
                tooltips=[("from", "@when"), ("events", "@count"), ("rate", "@matched{0,0.0}/s")],
            )
        )
        self.shade = BoxAnnotation(fill_color="#f5a623", fill_alpha=0.15, line_color="#f5a623")
        fig.add_layout(self.shade)
        fig.xgrid.grid_line_color = None
        fig.y_range.start = 0
        return fig

    def __panel__(self) -> pn.viewable.Viewable:
        # refreshing starts when the view is shown (a served page: once it has loaded)
        if self._callback is None:
            pn.state.onload(self._start)
        return self._layout

    def _start(self) -> None:
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self._tick, period=TICK_MS)

    @property
    def running(self) -> bool:
        """True while the view refreshes itself."""
        return self._callback is not None

    def stop(self) -> None:
        """Stop refreshing (a notebook cell you are done with)."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None


def _sources(log: Any) -> tuple[Path, bool, Path]:
    """The event log's file, whether the project records one, and the span store's file."""
    if log is None or isinstance(log, LoomConfig):
        config = log if log is not None else load_config()
        return (
            config.project_path(config.eventlog.path),
            config.eventlog.enabled,
            config.project_path(config.tracing.store_path),
        )
    path = Path(log.path if hasattr(log, "path") else log)
    return path, True, path.with_name("traces.db")


def _tabulator(
    frame: pd.DataFrame, height: int, hidden: list[str], clicks: RowClicks
) -> pn.widgets.Tabulator:
    return pn.widgets.Tabulator(
        frame, selectable=False, disabled=True, show_index=False, height=height,
        hidden_columns=hidden, sizing_mode="stretch_width", layout="fit_data_stretch",
        pagination=None,
        configuration=clicks.configuration({"columnDefaults": {"tooltip": True}}),
    )  # fmt: skip
