"""``loom``: the entry point that gathers every command."""

from __future__ import annotations

import os

import typer

from ..errors import LoomError
from . import bench, bus, mcp, tools, traces

app = typer.Typer(
    name="loom",
    help="Loom: build, run and observe multi-agent systems on a ZeroMQ bus.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("bus")(bus.bus)
app.command("bench")(bench.bench)
app.command("tools")(tools.tools)
app.command("traces")(traces.traces)
app.command("trace")(traces.trace)
app.add_typer(mcp.app, name="mcp")


def main() -> None:
    """Console-script entry: Loom errors become one red line and exit code 1."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        app()
    except LoomError as exc:
        from rich.console import Console
        from rich.markup import escape

        # escaped: "[llm.deepseek]" in a message is text, not a style tag
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
