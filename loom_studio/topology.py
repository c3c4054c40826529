"""The topology of the dashboard: agents, topic families and MCP servers, laid out left to
right along the flow, with the live rate along each edge.

Positions move only when the graph itself changes. The rates are labels on the busiest
edges, placed where they overlap no other label, node or node name (each edge offers a
few places along its length); every edge's rate is in its hover.

>>> layered_layout({"a": "agent", "t": "topic"}, [("a", "t")])
{'a': (0.0, 0.0), 't': (1.0, 0.0)}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import panel as pn
from bokeh.core.property.descriptors import UnsetValueError
from bokeh.models import Arrow, ColumnDataSource, HoverTool, VeeHead
from bokeh.plotting import figure

from .feed import StudioFeed

__all__ = ["Topology", "arrow_end", "layered_layout", "place_labels"]

KINDS = {  # node kind -> (marker, colour)
    "agent": ("circle", "#1565c0"),
    "topic": ("square", "#ef6c00"),
    "mcp": ("diamond", "#2e7d32"),
}
HEIGHT = 560  # px, the figure's
FRAME = (700, 500)  # px, the plot's frame until the page tells its width
PADDING = 0.25  # the ranges' padding around the nodes, as a fraction of their span
ALONG = (0.5, 0.38, 0.62, 0.26, 0.74)  # where a label may sit, from the edge's source
MAX_LABELS = 16  # the busiest edges get a label; every edge has its rate in the hover
ARROW_BACK = 0.12  # where an arrow ends, short of its node (data units)
HEAD_PX = 22  # an arrowhead's size, about (8 px + 1.5 times the edge's width)
CHAR_PX, LINE_PX, GAP_PX = 6.5, 13.0, 3.0  # 9pt text: a character's width, a line's height

Box = tuple[float, float, float, float]  # left, top, right, bottom in px (y down)


# -- where the nodes go ------------------------------------------------------------------


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


# -- where the rate labels go ------------------------------------------------------------


def place_labels(
    positions: Mapping[str, tuple[float, float]],
    edges: Sequence[tuple[str, str, str]],
    frame: tuple[float, float] = FRAME,
) -> list[tuple[float, float] | None]:
    """Where each edge's label goes (data coordinates), or None where it would overlap.

    ``edges`` are ``(source, target, text)``, the most important first: each takes the
    first place along it (:data:`ALONG`) whose text overlaps no label placed before, no
    node, node name or arrowhead, in a plot frame of ``frame`` px (width, height) showing
    the nodes with the figure's padding. Only the first :data:`MAX_LABELS` edges may get one.
    """
    to_px = _pixels(list(positions.values()), frame)
    taken = _obstacles(positions, edges, to_px)
    places: list[tuple[float, float] | None] = []
    for source, target, text in edges:
        places.append(None)
        if not text or len(places) > MAX_LABELS:
            continue
        (x0, y0), (x1, y1) = positions[source], positions[target]
        for t in ALONG:
            x, y = x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
            px, py = to_px(x, y)
            half = len(text) * CHAR_PX / 2 + GAP_PX
            box = (px - half, py - GAP_PX - LINE_PX, px + half, py - GAP_PX)  # above the point
            if not any(_overlap(box, other) for other in taken):
                taken.append(box)
                places[-1] = (x, y)
                break
    return places


def _obstacles(
    positions: Mapping[str, tuple[float, float]],
    edges: Sequence[tuple[str, str, str]],
    to_px: Any,
) -> list[Box]:
    """What a label must not cover: the nodes, their names below them, the arrowheads."""
    boxes = []
    for name, (x, y) in positions.items():
        px, py = to_px(x, y)
        boxes.append((px - 11, py - 11, px + 11, py + 11))  # the marker
        half = len(name) * CHAR_PX / 2
        boxes.append((px - half, py + 14, px + half, py + 14 + LINE_PX))  # its name, below
    for source, target, _ in edges:
        (x0, y0), (x1, y1) = to_px(*positions[source]), to_px(*positions[target])
        tip = to_px(*arrow_end(positions[source], positions[target]))
        length = math.hypot(x1 - x0, y1 - y0) or 1.0
        cx = tip[0] - (x1 - x0) / length * HEAD_PX / 2  # the vee, back from its tip
        cy = tip[1] - (y1 - y0) / length * HEAD_PX / 2
        boxes.append((cx - HEAD_PX / 2, cy - HEAD_PX / 2, cx + HEAD_PX / 2, cy + HEAD_PX / 2))
    return boxes


def arrow_end(start: tuple[float, float], end: tuple[float, float]) -> tuple[float, float]:
    """Where an edge's arrow ends: short of its target node, so its head stays visible."""
    (x0, y0), (x1, y1) = start, end
    length = math.hypot(x1 - x0, y1 - y0) or 1.0
    back = min(ARROW_BACK, length / 3) / length
    return x1 - (x1 - x0) * back, y1 - (y1 - y0) * back


def _pixels(points: list[tuple[float, float]], frame: tuple[float, float]) -> Any:
    """Data -> screen px (y down), as the figure's padded ranges map them."""
    xs, ys = zip(*points, strict=True) if points else ((0.0,), (0.0,))
    scales = []
    for values, size in ((xs, frame[0]), (ys, frame[1])):
        span = (max(values) - min(values)) * (1 + PADDING) or 2.0  # Bokeh's default span
        scales.append((size / span, (max(values) + min(values)) / 2, size / 2))
    (sx, cx, hx), (sy, cy, hy) = scales
    return lambda x, y: (hx + (x - cx) * sx, hy - (y - cy) * sy)


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _rate_label(rate: float) -> str:
    if rate <= 0:
        return ""
    return f"{rate:.1f}/s" if rate < 100 else f"{rate:,.0f}/s"


# -- the part of the page ----------------------------------------------------------------


class Topology:
    """Agents, topic families and MCP servers, with the live rate along each edge."""

    def __init__(self) -> None:
        self.nodes = ColumnDataSource(dict(x=[], y=[], name=[], kind=[], color=[], marker=[]))
        self.edges = ColumnDataSource(
            dict(x0=[], y0=[], x1=[], y1=[], lx=[], ly=[], width=[], head=[], alpha=[], rate=[],
                 label=[], source=[], target=[])
        )  # fmt: skip
        self.positions: dict[str, tuple[float, float]] = {}
        self._structure: tuple[frozenset[Any], frozenset[Any]] | None = None
        self.figure = _figure(self.nodes, self.edges)
        self.pane = pn.pane.Bokeh(self.figure, sizing_mode="stretch_width")
        self.panel = pn.Card(
            self.pane, title="Topology", collapsible=False, sizing_mode="stretch_width",
            margin=(5, 5),
        )  # fmt: skip

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

    def _frame(self) -> tuple[float, float]:
        """The plot frame's size in px: as the page reports it once drawn."""
        try:
            width, height = self.figure.inner_width, self.figure.inner_height
        except UnsetValueError:  # not drawn yet
            return FRAME
        return (width, height) if width and height else FRAME

    def _edge_data(self, rates: dict[tuple[str, str], float]) -> dict[str, list[Any]]:
        shown = [
            (edge, rate) for edge, rate in sorted(rates.items()) if set(edge) <= set(self.positions)
        ]
        busiest = sorted(shown, key=lambda item: -item[1])
        places = dict(
            zip(
                [edge for edge, _ in busiest],
                place_labels(
                    self.positions, [(*e, _rate_label(r)) for e, r in busiest], self._frame()
                ),
                strict=True,
            )
        )
        data: dict[str, list[Any]] = {key: [] for key in self.edges.data}
        for (a, b), rate in shown:
            (x0, y0), (x1, y1) = self.positions[a], arrow_end(self.positions[a], self.positions[b])
            width = min(1.5 + 2 * math.log1p(rate), 10)
            place = places[a, b]
            values = dict(
                x0=x0, y0=y0, x1=x1, y1=y1,
                lx=place[0] if place else x0, ly=place[1] if place else y0, width=width,
                head=8 + 1.5 * width, alpha=0.75 if rate > 0 else 0.25, rate=round(rate, 2),
                label=_rate_label(rate) if place else "", source=a, target=b,
            )  # fmt: skip
            for key, value in values.items():
                data[key].append(value)
        return data


def _figure(nodes: ColumnDataSource, edges: ColumnDataSource) -> Any:
    fig = figure(
        height=HEIGHT, sizing_mode="stretch_width", tools="pan,wheel_zoom,reset,save",
        toolbar_location="right", outline_line_color=None,
    )  # fmt: skip
    fig.x_range.range_padding = fig.y_range.range_padding = PADDING
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
    fig.text("lx", "ly", text="label", source=edges, text_font_size="9pt", text_color="#37474f",
             text_align="center", text_baseline="bottom", y_offset=-GAP_PX, level="overlay",
             background_fill_color="white", background_fill_alpha=0.7)  # fmt: skip
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
