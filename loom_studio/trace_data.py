"""Turning spans into what the trace figures draw: a trace's lanes, bars and links (the
timeline and the flamegraph), the latency heatmap's cells, a span's detail as HTML, and the
search's attribute filter. Pure functions of spans (no widgets, no figures, no store):
``traces.py`` draws what they return.

    cols, links = trace_layout(store.trace(trace_id))  # cols["lane"][0]: ("planner", 0.0)
"""

from __future__ import annotations

import html
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from bokeh.palettes import Category20_20

from loom_kernel import LoomError
from loom_kernel.protocol import Span

__all__ = [
    "ERROR_COLOR",
    "HEATMAP_BUCKET_S",
    "HEATMAP_WINDOW",
    "flame_labels",
    "heatmap_cells",
    "lane_rows",
    "parse_attribute",
    "span_agent",
    "span_html",
    "status_text",
    "trace_layout",
]

HEATMAP_WINDOW = timedelta(minutes=15)
HEATMAP_BUCKET_S = 10
HEATMAP_NAMES = 25  # the span names with the most total time
ERROR_COLOR = "#d62728"
AGENT_COLORS = [c for c in Category20_20[1::2] if c != "#ff9896"]  # light, none red
KIND_COLORS = {
    "producer": "#1f77b4",
    "consumer": "#2ca02c",
    "server": "#9467bd",
    "client": "#ff7f0e",
    "internal": "#8c8c8c",
}
LABEL_PX, CHAR_PX = 800, 6.5  # flamegraph labels: plot width until the page tells, font width
NO_AGENT = "(no agent)"
SPAN_COLUMNS = (
    "span_id", "name", "agent", "kind", "status", "start", "duration", "right", "lane", "height",
    "depth", "color", "legend", "flame_color", "label", "label_color",
)  # fmt: skip


# -- a trace: lanes, bars and links -----------------------------------------------------


def trace_layout(
    spans: Sequence[Span], width_px: float = LABEL_PX
) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """The columns of a trace's spans (one row per span, in start order) and of its
    parent -> child links, as the timeline and the flamegraph draw them.

    Times are ms since the trace's first span. ``lane`` is ``(agent, offset)``: each agent
    has one lane, split in rows so that overlapping spans of one agent do not hide each
    other. ``depth`` is the span's depth in the trace tree (roots: 0). ``label`` is the
    name as it fits in the span's flamegraph bar, in a plot ``width_px`` wide.
    """
    spans = sorted(spans, key=lambda s: s.start_ns)
    t0 = spans[0].start_ns if spans else 0
    total = max((s.end_ns - t0 for s in spans), default=0) / 1e6 or 1.0
    by_id = {s.span_id: s for s in spans}
    rows, lanes = lane_rows(spans)
    agents = [span_agent(s) for s in spans]
    order = list(dict.fromkeys(agents))
    cols: dict[str, list[Any]] = {column: [] for column in SPAN_COLUMNS}
    cols["label"] = flame_labels(spans, width_px)
    for span, agent, row in zip(spans, agents, rows, strict=True):
        start = (span.start_ns - t0) / 1e6
        n = lanes[agent]
        depth = _depth(span, by_id)
        error = span.status == "error"
        cols["span_id"].append(span.span_id)
        cols["name"].append(span.name)
        cols["agent"].append(agent)
        cols["kind"].append(span.kind)
        cols["status"].append(status_text(span))
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


def span_agent(span: Span) -> str:
    """The agent a span belongs to: its ``agent``, else its ``service``, else "(no agent)"."""
    return span.agent or span.service or NO_AGENT


def lane_rows(spans: Sequence[Span]) -> tuple[list[int], dict[str, int]]:
    """Per span (in start order), the first row of its agent's lane where it overlaps
    nothing; and per agent, how many rows its lane needs."""
    ends: dict[str, list[int]] = defaultdict(list)  # per agent: the end of each row
    rows = []
    for span in spans:
        lane = ends[span_agent(span)]
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


def flame_labels(spans: Sequence[Span], width_px: float = LABEL_PX) -> list[str]:
    """Each span's name (in start order) as it fits in its flamegraph bar, in a plot
    ``width_px`` wide: cut with "…", or nothing when the bar is too narrow (its hover
    shows the whole name)."""
    spans = sorted(spans, key=lambda s: s.start_ns)
    t0 = spans[0].start_ns if spans else 0
    total = max((s.end_ns - t0 for s in spans), default=0) / 1e6 or 1.0
    return [_label(s.name, s.duration_ms / total, width_px) for s in spans]


def _label(name: str, fraction: float, width_px: float) -> str:
    """The name, cut to what fits in a bar of this fraction of the plot's width."""
    fits = int(fraction * width_px / CHAR_PX) - 1
    if fits >= len(name):
        return name
    return name[: fits - 1] + "…" if fits >= 6 else ""


def status_text(span: Span) -> str:
    """The span's status, with its message when it has one (``"error: no budget"``)."""
    return f"{span.status}: {span.status_message}" if span.status_message else span.status


# -- the latency heatmap ----------------------------------------------------------------


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


# -- the search's attribute filter ------------------------------------------------------


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
    status = e(status_text(span))
    parts = [
        _STYLE,
        '<div class="sd">',
        f"<h3 style='margin:0'>{e(span.name)}</h3>",
        f"<div class='{'err' if span.status == 'error' else ''}'>status {status}</div>",
        _html_table(
            [
                ("agent", span_agent(span)),
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
