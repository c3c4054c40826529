"""The traces view: recent traces, one trace as per-agent lanes and as a flamegraph, span
search, a latency heatmap and the detail of a span, all read from the span store.

    Traces()                                     # the nearest project's [tracing] store_path
    Traces(store=".loom/traces.db").show_trace("621c")

It reads the SQLite file only (no bus): the list and the heatmap refresh every
``refresh_ms`` in a worker thread, so the page's event loop never waits on the disk.
Selecting a trace (a row of the list or of the search results) draws it; selecting a
span (a bar, or a search result) shows its attributes, events, links and GenAI usage.
"""

from __future__ import annotations

import asyncio
import html
import importlib
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import panel as pn
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
from bokeh.palettes import Category20_20, Viridis256
from bokeh.plotting import figure

from loom_kernel.config import load_config
from loom_kernel.errors import LoomError
from loom_kernel.span_store import SpanStore, TraceSummary
from loom_kernel.spans import Span

__all__ = ["Traces"]

# Tabulator's JS is added to a page only if its model is imported when the page is made:
# the studio shows this view in a dynamic tab, created after that.
importlib.import_module("panel.models.tabulator")

MIN_REFRESH_MS = 1000  # the list and the heatmap are read at most once a second
RECENT_TRACES = 50
SEARCH_LIMIT = 200
HEATMAP_WINDOW = timedelta(minutes=15)
HEATMAP_BUCKET_S = 10
HEATMAP_SPANS = 20_000  # newest spans of the window read per refresh
HEATMAP_NAMES = 25  # the span names with the most total time
HEATMAP_EVERY_S = 10.0  # the heatmap's buckets are 10 s: no point in reading it more often
ERROR_COLOR = "#d62728"
AGENT_COLORS = [c for c in Category20_20[1::2] if c != "#ff9896"]  # light, none red
KIND_COLORS = {
    "producer": "#1f77b4",
    "consumer": "#2ca02c",
    "server": "#9467bd",
    "client": "#ff7f0e",
    "internal": "#8c8c8c",
}
LABEL_PX, CHAR_PX = 1000, 6.5  # flamegraph labels: assumed plot width, font width
NO_AGENT = "(no agent)"
SPAN_COLUMNS = (
    "span_id", "name", "agent", "kind", "status", "start", "duration", "right", "lane", "height",
    "depth", "color", "legend", "flame_color", "label", "label_color",
)  # fmt: skip
STATUSES = ("any", "ok", "error", "unset")
ANY = "any"


# -- data for the figures ---------------------------------------------------------------


def trace_layout(spans: Sequence[Span]) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """The columns of a trace's spans (one row per span, in start order) and of its
    parent -> child links, as the timeline and the flamegraph draw them.

    Times are ms since the trace's first span. ``lane`` is ``(agent, offset)``: each agent
    has one lane, split in rows so that overlapping spans of one agent do not hide each
    other. ``depth`` is the span's depth in the trace tree (roots: 0).
    """
    spans = sorted(spans, key=lambda s: s.start_ns)
    t0 = spans[0].start_ns if spans else 0
    total = max((s.end_ns - t0 for s in spans), default=0) / 1e6 or 1.0
    by_id = {s.span_id: s for s in spans}
    rows, lanes = _lane_rows(spans)
    agents = [_agent(s) for s in spans]
    order = list(dict.fromkeys(agents))
    cols: dict[str, list[Any]] = {column: [] for column in SPAN_COLUMNS}
    for span, agent, row in zip(spans, agents, rows, strict=True):
        start = (span.start_ns - t0) / 1e6
        n = lanes[agent]
        depth = _depth(span, by_id)
        error = span.status == "error"
        cols["span_id"].append(span.span_id)
        cols["name"].append(span.name)
        cols["agent"].append(agent)
        cols["kind"].append(span.kind)
        cols["status"].append(_status_text(span))
        cols["start"].append(start)
        cols["duration"].append(span.duration_ms)
        cols["right"].append(start + max(span.duration_ms, total * 0.003))  # always visible
        cols["lane"].append((agent, 0.4 - (row + 0.5) * 0.8 / n))
        cols["height"].append(0.8 / n * 0.85)
        cols["depth"].append(depth)
        cols["color"].append(ERROR_COLOR if error else KIND_COLORS.get(span.kind, "#8c8c8c"))
        cols["legend"].append("error" if error else span.kind)
        flame = AGENT_COLORS[order.index(agent) % len(AGENT_COLORS)]
        cols["flame_color"].append(ERROR_COLOR if error else flame)
        cols["label"].append(_label(span.name, span.duration_ms / total))
        cols["label_color"].append("white" if error else "#222")
    index = {span_id: i for i, span_id in enumerate(cols["span_id"])}
    links: dict[str, list[Any]] = {"x0": [], "y0": [], "x1": [], "y1": []}
    for i, span in enumerate(spans):
        parent = index.get(span.parent_id or "")
        if parent is not None:
            links["x0"].append(cols["start"][i])
            links["y0"].append(cols["lane"][parent])
            links["x1"].append(cols["start"][i])
            links["y1"].append(cols["lane"][i])
    return cols, links


def _agent(span: Span) -> str:
    return span.agent or span.service or NO_AGENT


def _lane_rows(spans: Sequence[Span]) -> tuple[list[int], dict[str, int]]:
    """Per span, the first row of its agent's lane where it overlaps nothing."""
    ends: dict[str, list[int]] = defaultdict(list)  # per agent: the end of each row
    rows = []
    for span in spans:
        lane = ends[_agent(span)]
        row = next((r for r, end in enumerate(lane) if end <= span.start_ns), len(lane))
        if row == len(lane):
            lane.append(0)
        lane[row] = max(span.end_ns, span.start_ns + 1)
        rows.append(row)
    return rows, {agent: len(lane) for agent, lane in ends.items()}


def _depth(span: Span, by_id: dict[str, Span]) -> int:
    depth, seen = 0, {span.span_id}
    while span.parent_id in by_id and span.parent_id not in seen:
        span = by_id[span.parent_id]
        seen.add(span.span_id)
        depth += 1
    return depth


def _label(name: str, fraction: float) -> str:
    """The name, cut to what fits in a bar of this fraction of the plot's width."""
    fits = int(fraction * LABEL_PX / CHAR_PX) - 1
    if fits >= len(name):
        return name
    return name[: fits - 1] + "…" if fits >= 6 else ""


def _status_text(span: Span) -> str:
    return f"{span.status}: {span.status_message}" if span.status_message else span.status


def heatmap_cells(
    spans: Sequence[Span],
    *,
    now: float,
    window_s: float = HEATMAP_WINDOW.total_seconds(),
    bucket_s: int = HEATMAP_BUCKET_S,
    names: int = HEATMAP_NAMES,
) -> dict[str, list[Any]]:
    """One cell per span name and time bucket of the window ending at ``now`` (epoch s):
    ``count``, ``p95`` and ``mean`` duration in ms, bucket start ``t`` (epoch s). Only the
    ``names`` names with the most total time are kept."""
    first = math.floor((now - window_s) / bucket_s) * bucket_s
    groups: dict[tuple[str, float], list[float]] = defaultdict(list)
    total: dict[str, float] = defaultdict(float)
    for span in spans:
        start = span.start_ns / 1e9
        if start >= first:
            groups[span.name, first + (start - first) // bucket_s * bucket_s].append(
                span.duration_ms
            )
            total[span.name] += span.duration_ms
    kept = set(sorted(total, key=total.__getitem__, reverse=True)[:names])
    cells: dict[str, list[Any]] = {"name": [], "t": [], "count": [], "p95": [], "mean": []}
    for (name, t), durations in sorted(groups.items()):
        if name in kept:
            durations.sort()
            cells["name"].append(name)
            cells["t"].append(t)
            cells["count"].append(len(durations))
            cells["p95"].append(durations[math.ceil(0.95 * len(durations)) - 1])
            cells["mean"].append(sum(durations) / len(durations))
    return cells


def parse_attribute(text: str) -> tuple[str, Any] | None:
    """``"key=value"`` as the store's attribute filter; numbers become numbers, ``true`` and
    ``false`` booleans, and a quoted value stays text (``"key=\\"42\\""``). Blank: None.

    Raises:
        LoomError: no ``=`` or no key; the message shows the expected form.
    """
    text = text.strip()
    if not text:
        return None
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise LoomError(
            f"attribute filter {text!r}: write key=value, e.g. gen_ai.request.model=gpt-4o "
            "or gen_ai.usage.input_tokens=42"
        )
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return key, value[1:-1]
    if value in ("true", "false"):
        return key, value == "true"
    for number in (int, float):
        try:
            return key, number(value)
        except ValueError:
            pass
    return key, value


# -- the span detail --------------------------------------------------------------------

GENAI_KEYS = (
    ("model", ("gen_ai.response.model", "gen_ai.request.model")),
    ("input tokens", ("gen_ai.usage.input_tokens",)),
    ("output tokens", ("gen_ai.usage.output_tokens",)),
    ("cost USD", ("loom.llm.cost_usd",)),
    ("latency ms", ("loom.llm.latency_ms",)),
)
_STYLE = (
    "<style>.sd{font:13px/1.4 sans-serif}.sd table{border-collapse:collapse;width:100%}"
    ".sd td{border-top:1px solid #eee;padding:2px 4px;vertical-align:top;word-break:break-all}"
    ".sd td:first-child{color:#555;white-space:nowrap;word-break:normal}"
    ".sd h4{margin:10px 0 4px}.sd pre{white-space:pre-wrap;font-size:11px;max-height:240px;"
    "overflow:auto;background:#f6f6f6;padding:4px}.sd .genai{background:#fff4d6;"
    "border:1px solid #f0c36d;border-radius:4px;padding:6px;margin:6px 0}"
    ".sd .err{color:#b71c1c;font-weight:bold}</style>"
)


def span_html(span: Span, trace_start_ns: int) -> str:
    """The detail of one span as HTML: status, timing, GenAI usage, attributes, events
    (exceptions with their message and stack), links."""
    e = html.escape
    status = e(_status_text(span))
    parts = [
        _STYLE,
        '<div class="sd">',
        f"<h3 style='margin:0'>{e(span.name)}</h3>",
        f"<div class='{'err' if span.status == 'error' else ''}'>status {status}</div>",
        _html_table(
            [
                ("agent", _agent(span)),
                ("kind", span.kind),
                ("service", span.service),
                ("start", f"+{(span.start_ns - trace_start_ns) / 1e6:,.3f} ms"),
                ("duration", f"{span.duration_ms:,.3f} ms"),
                ("trace", span.trace_id),
                ("span", span.span_id),
                ("parent", span.parent_id or "(root)"),
            ]
        ),
    ]
    genai = [
        (label, span.attributes[key])
        for label, keys in GENAI_KEYS
        for key in keys[:1] + tuple(k for k in keys[1:] if keys[0] not in span.attributes)
        if key in span.attributes
    ]
    if genai:
        usage = " · ".join(f"{e(label)} <b>{e(_value(value))}</b>" for label, value in genai)
        parts.append(f"<div class='genai'><b>LLM</b> {usage}</div>")
    if span.attributes:
        parts += ["<h4>Attributes</h4>", _html_table(sorted(span.attributes.items()))]
    for event in span.events:
        offset = (event.ts_ns - trace_start_ns) / 1e6
        attrs = dict(event.attributes)
        parts.append(f"<h4>Event {e(event.name)} <small>+{offset:,.3f} ms</small></h4>")
        if event.name == "exception":
            kind, message = attrs.pop("exception.type", ""), attrs.pop("exception.message", "")
            parts.append(f"<div class='err'>{e(str(kind))}: {e(str(message))}</div>")
            stack = attrs.pop("exception.stacktrace", None)
            if stack:
                parts.append(f"<details><summary>stack</summary><pre>{e(stack)}</pre></details>")
        if attrs:
            parts.append(_html_table(sorted(attrs.items())))
    if span.links:
        parts += ["<h4>Links</h4>", _html_table([(t[:12], s) for t, s in span.links])]
    parts.append("</div>")
    return "".join(parts)


def _value(value: Any, limit: int = 2000) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


def _html_table(rows: Sequence[tuple[str, Any]]) -> str:
    cells = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_value(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{cells}</table>"


# -- the view ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Snapshot:
    """What one refresh read from the store (in a worker thread)."""

    exists: bool
    count: int = 0
    summaries: tuple[TraceSummary, ...] = ()
    heatmap: tuple[Span, ...] | None = None  # None: not read this time
    now: float = 0.0


class Traces(pn.viewable.Viewer):
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
        **params: Any,
    ):
        super().__init__(**params)
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
        self._callback = None
        if refresh_ms:
            self._callback = pn.state.add_periodic_callback(
                self._tick, period=max(MIN_REFRESH_MS, refresh_ms)
            )

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
        self.trace_id, self._spans = full, spans
        cols, links = trace_layout(spans)
        agents = list(dict.fromkeys(cols["agent"]))
        self.timeline.y_range.factors = agents[::-1]  # first agent to act at the top
        rows = max(_lane_rows(spans)[1].values(), default=1)
        self.timeline.height = min(900, max(160, 60 + len(agents) * max(28, rows * 16)))
        depth = max(cols["depth"], default=0)
        self.flamegraph.height = min(900, max(140, 60 + (depth + 1) * 24))
        self.spans_source.selected.indices = []
        self.spans_source.data = cols
        self.links_source.data = links
        self._select_row(self.recent, "trace_id", full)
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
        if heatmap:
            spans = tuple(
                self.store.query(since=now - HEATMAP_WINDOW.total_seconds(), limit=HEATMAP_SPANS)
            )
        return _Snapshot(
            exists=True,
            count=self.store.count(),
            summaries=tuple(self.store.traces(limit=RECENT_TRACES)),
            heatmap=spans,
            now=now,
        )

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        heatmap = loop.time() - self._heatmap_at >= HEATMAP_EVERY_S
        if heatmap:
            self._heatmap_at = loop.time()
        self._apply(await asyncio.to_thread(self._read, heatmap))

    def _apply(self, snap: _Snapshot) -> None:
        if not snap.exists:
            self.header.object = (
                f"**No spans stored yet** in `{self.store.path}`: they appear here once "
                "agents run with tracing on (the process running the bus stores them)."
            )
            return
        self.header.object = (
            f"**{snap.count:,} spans** in `{self.store.path}` · "
            f"read {datetime.fromtimestamp(snap.now):%H:%M:%S}"
        )
        for summary in snap.summaries:
            self._agents.update(summary.agents)
        agents = [ANY, *sorted(self._agents)]
        if self.filters["agent"].options != agents:
            self.filters["agent"].options = agents
        listed = [(s.trace_id, s.spans, s.errors, s.duration_ms) for s in snap.summaries]
        if listed != self._listed:
            self._listed = listed
            self.recent.value = _trace_frame(snap.summaries)
            self._select_row(self.recent, "trace_id", self.trace_id)
            shown = next((s for s in snap.summaries if s.trace_id == self.trace_id), None)
            if self.trace_id is None and snap.summaries:
                self._open(snap.summaries[0].trace_id)
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

    def _on_trace_row(self, event: Any) -> None:
        trace_id = _selected(self.recent, "trace_id")
        if trace_id and trace_id != self.trace_id:
            pn.state.execute(partial(self._open, trace_id), schedule=True)

    def _on_result_row(self, event: Any) -> None:
        trace_id = _selected(self.results, "trace_id")
        if trace_id:
            span_id = _selected(self.results, "span_id")
            pn.state.execute(partial(self._open, trace_id, span_id), schedule=True)

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
        agents = {_agent(s) for s in spans}
        errors = sum(s.status == "error" for s in spans)
        root = next((s.name for s in spans if s.parent_id is None), spans[0].name if spans else "")
        duration = (max(s.end_ns for s in spans) - spans[0].start_ns) / 1e6 if spans else 0.0
        return (
            f"trace {self.trace_id} · {root} · {len(spans)} spans · {len(agents)} agents · "
            f"{duration:,.2f} ms · {errors} errors"
        )

    @staticmethod
    def _select_row(table: pn.widgets.Tabulator, column: str, value: str | None) -> None:
        values = list(table.value[column]) if column in table.value else []
        selection = [values.index(value)] if value in values else []
        if table.selection != selection:
            table.selection = selection

    # -- layout ---------------------------------------------------------------------

    def _build(self) -> None:
        self.header = pn.pane.Markdown(margin=(0, 10))
        self.recent = _tabulator(_trace_frame([]), height=250, hidden=["trace_id"])
        self.recent.param.watch(self._on_trace_row, "selection")
        self.trace_title = pn.pane.Str("", styles={"font-size": "13px"}, margin=(4, 10))
        self.spans_source = ColumnDataSource(data=trace_layout([])[0])
        self.spans_source.selected.on_change("indices", self._on_span_tap)
        self.links_source = ColumnDataSource(data={"x0": [], "y0": [], "x1": [], "y1": []})
        self.timeline, self.flamegraph = self._trace_figures()
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
            pn.Column(self.header, self.recent, self.tabs, **stretch),
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
        return self._layout


def _pane(fig: Any) -> pn.pane.Bokeh:
    return pn.pane.Bokeh(fig, sizing_mode="stretch_width")


def _tabulator(frame: pd.DataFrame, *, height: int, hidden: list[str]) -> pn.widgets.Tabulator:
    return pn.widgets.Tabulator(
        frame, selectable=1, disabled=True, show_index=False, height=height,
        hidden_columns=hidden, sizing_mode="stretch_width", layout="fit_data_stretch",
        pagination=None,
    )  # fmt: skip


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
            "agents": [", ".join(s.agents) for s in summaries],
            "duration ms": pd.Series([s.duration_ms for s in summaries], dtype="float64"),
            "errors": pd.Series([s.errors for s in summaries], dtype="int64"),
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
            "agent": [_agent(s) for s in spans],
            "kind": [s.kind for s in spans],
            "status": [_status_text(s) for s in spans],
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
