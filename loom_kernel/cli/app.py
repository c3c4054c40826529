"""``loom``: the entry point that gathers every command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from ..errors import LoomError
from . import bench, bus, deploy, init, mcp, run, tools, traces

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
app.command("deploy")(deploy.deploy)
app.command("trace")(traces.trace)
app.add_typer(mcp.app, name="mcp")
app.command("init")(init.init)
app.add_typer(init.create_app, name="create")
app.command("run")(run.run)
for _action in ("start", "stop", "restart"):
    app.command(_action)(run._control(_action))
app.command("status")(run.status)
app.command("logs")(run.logs)
app.command("publish")(run.publish)
app.command("subscribe")(run.subscribe)


@app.command("studio")
def studio(
    port: Annotated[int, typer.Option(help="Port (0: a free one).")] = 5006,
    address: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    config: Annotated[Path | None, typer.Option(help="The project's loom.toml.")] = None,
) -> None:
    """Serve the studio (dashboard and traces) for the project's bus; Ctrl-C stops it.

    Example: `loom studio --port 5006`, then open http://127.0.0.1:5006/.
    """
    # The kernel never imports the studio at import time: only this command does.
    from loom_studio.cli import studio as run_studio

    run_studio(port=port, address=address, config=config)


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
