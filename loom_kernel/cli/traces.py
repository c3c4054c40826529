"""``loom traces`` and ``loom trace``: the span store, read from the terminal."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from ..errors import LoomError
from ..protocol import Span
from ..tracing import SpanStore, TraceSummary
from .project import load_project


def _store(config: Path | None) -> SpanStore:
    settings = load_project(config)
    path = settings.project_path(settings.tracing.store_path)
    if not path.is_file():
        raise LoomError(
            f"no span store at {path}: traces are stored by the process that runs the bus "
            "(an embedded bus, or `loom bus`) while [tracing] enabled and collect are on"
        )
    return SpanStore(path)


#: A trace with no span ended for this long is complete: every process's batch arrived
#: (processes flush every 0.5 s).
SETTLED_SEC = 2.0

AgentOption = Annotated[str | None, typer.Option(help="Only traces this agent took part in.")]
NameOption = Annotated[
    str | None, typer.Option("--name", help="Only traces with a span whose name contains this.")
]
MinSpansOption = Annotated[
    int | None, typer.Option("--min-spans", min=1, help="Only traces of at least N spans.")
]


def traces(
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many traces.")] = 20,
    agent: AgentOption = None,
    name: NameOption = None,
    min_spans: MinSpansOption = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only traces with an error.")] = False,
    minutes: Annotated[float | None, typer.Option(help="Only the last N minutes.")] = None,
    config: Annotated[Path | None, typer.Option(help="The project's loom.toml.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List recent traces: root span, spans, agents, duration, errors.

    Examples: `loom traces`, `loom traces --errors -n 5`, `loom traces --agent planner`,
    `loom traces --name trade.order --min-spans 15`.
    """
    store = _store(config)
    since = timedelta(minutes=minutes) if minutes is not None else None
    found = store.traces(
        limit=limit,
        since=since,
        agent=agent,
        errors_only=errors,
        name=name,
        min_spans=min_spans,
    )
    if as_json:
        print(json.dumps([summary.to_dict() for summary in found], indent=2))
        return
    console = Console()
    console.print(_traces_table(found, f"{len(found)} recent traces ({store.path})", console.width))


_HEADS = ("trace", "started", "root", "spans", "agents", "ms", "errors")
_RIGHT = {"spans", "ms", "errors"}


def _traces_table(found: list[TraceSummary], title: str, width: int) -> Table:
    """One line per trace, sized to ``width``: the short columns keep their width, the
    root span and the agents share the rest (cut with an ellipsis, never folded)."""
    rows = [
        (
            summary.trace_id[:12],  # a prefix: `loom trace` takes it
            datetime.fromtimestamp(summary.start_ns / 1e9).strftime("%H:%M:%S"),
            summary.root,
            str(summary.spans),
            ", ".join(summary.agents),
            f"{summary.duration_ms:,.2f}",
            str(summary.errors),
        )
        for summary in found
    ]
    sizes = {
        head: max([len(head)] + [len(row[index]) for row in rows])
        for index, head in enumerate(_HEADS)
    }
    separators = 2 * (len(_HEADS) - 1) + 1  # a space and a padding between columns
    fixed = sum(size for head, size in sizes.items() if head not in ("root", "agents"))
    left = max(24, width - fixed - separators)
    sizes["root"] = min(sizes["root"], max(len("root"), left - 12))  # the root first
    sizes["agents"] = max(len("agents"), left - sizes["root"])
    table = Table(
        title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1, 0, 0)
    )
    for head in _HEADS:
        justify = "right" if head in _RIGHT else "left"
        table.add_column(
            head, width=sizes[head], no_wrap=True, overflow="ellipsis", justify=justify
        )
    for row in rows:
        errors = row[-1]
        table.add_row(*row[:-1], f"[red]{errors}[/]" if errors != "0" else errors)
    return table


def trace(
    trace_id: Annotated[
        str | None, typer.Argument(help="The trace id, or a unique prefix (see `loom traces`).")
    ] = None,
    last: Annotated[
        bool, typer.Option("--last", help="The newest complete trace (matching the filters).")
    ] = False,
    agent: AgentOption = None,
    name: NameOption = None,
    min_spans: MinSpansOption = None,
    attributes: Annotated[
        bool, typer.Option("--attributes/--no-attributes", "-a", help="Show span attributes.")
    ] = True,
    config: Annotated[Path | None, typer.Option(help="The project's loom.toml.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the spans as JSON.")] = False,
) -> None:
    """Print one trace as a tree of spans with timings (and attributes).

    `--last` takes the newest complete trace (no span for 2 s: every process's spans are
    in), or the newest of those matching `--agent`, `--name` and `--min-spans`.

    Examples: `loom trace --last`, `loom trace --last --min-spans 15`,
    `loom trace --last --name trade.order`, `loom trace 4bf92f35 --json`.
    """
    if trace_id is None and not last:
        raise LoomError("name a trace id (see `loom traces`) or pass --last")
    store = _store(config)
    if last:
        chosen = _last(store, agent=agent, name=name, min_spans=min_spans)
    else:
        chosen = store.resolve(trace_id or "")
    spans = store.trace(chosen)
    if as_json:
        print(json.dumps([_span_dict(span) for span in spans], indent=2, default=str))
        return
    Console().print(_tree(spans, attributes))


def _last(store: SpanStore, **filters: object) -> str:
    """The newest settled trace matching ``filters``; the newest one at all when none has
    settled yet (a run that just started)."""
    chosen = store.last_trace_id(settled=SETTLED_SEC, **filters)
    chosen = chosen or store.last_trace_id(**{k: v for k, v in filters.items() if v is not None})
    if chosen is None:
        asked = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in filters.items() if v is not None)
        raise LoomError(
            f"no trace stored in {store.path}" + (f" with {asked}" if asked else " yet")
        )
    return chosen


def _span_dict(span: Span) -> dict[str, object]:
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "name": span.name,
        "kind": span.kind,
        "agent": span.agent,
        "service": span.service,
        "start_ns": span.start_ns,
        "duration_ms": round(span.duration_ms, 3),
        "status": span.status,
        "status_message": span.status_message,
        "attributes": span.attributes,
        "events": [
            {"name": e.name, "ts_ns": e.ts_ns, "attributes": e.attributes} for e in span.events
        ],
        "links": [list(link) for link in span.links],
    }


def _tree(spans: list[Span], attributes: bool) -> Tree:
    start = spans[0].start_ns
    total = max(span.end_ns for span in spans) - start
    ids = {span.span_id for span in spans}
    children: dict[str | None, list[Span]] = {}
    for span in spans:
        parent = span.parent_id if span.parent_id in ids else None
        children.setdefault(parent, []).append(span)
    errors = sum(span.status == "error" for span in spans)
    agents = sorted({span.agent for span in spans if span.agent})
    root = Tree(
        f"[bold]trace {spans[0].trace_id}[/]  {len(spans)} spans  {total / 1e6:,.2f} ms  "
        f"agents: {', '.join(agents)}" + (f"  [red]{errors} error(s)[/]" if errors else "")
    )

    def add(node: Tree, span: Span) -> None:
        colour = "red" if span.status == "error" else "cyan"
        label = (
            f"[{colour}]{span.name}[/]  [dim]{span.kind}[/]  {span.agent or '-'}  "
            f"+{(span.start_ns - start) / 1e6:,.2f} ms  [bold]{span.duration_ms:,.3f} ms[/]"
        )
        if span.status_message:
            label += f"  [red]{span.status_message}[/]"
        if span.links:
            label += f"  [magenta]links: {len(span.links)}[/]"
        branch = node.add(label)
        if attributes and span.attributes:
            shown = "  ".join(f"{key}={value}" for key, value in span.attributes.items())
            branch.add(f"[dim]{escape(shown)}[/]")
        for child in children.get(span.span_id, []):
            add(branch, child)

    for top in children.get(None, []):
        add(root, top)
    return root
