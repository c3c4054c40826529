"""``loom``: the entry point that gathers every command."""

from __future__ import annotations

import os
from collections.abc import Callable
from importlib.metadata import entry_points

import typer

from ..errors import LoomError
from . import bench, bridge, bus, deploy, eventlog, init, keys, mcp, run, tools, traces

app = typer.Typer(
    name="loom",
    help="Loom: build, run and observe multi-agent systems on a ZeroMQ or NATS bus.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("bus")(bus.bus)
app.command("bench")(bench.bench)
app.command("tools")(tools.tools)
app.command("traces")(traces.traces)
app.command("deploy")(deploy.deploy)
app.command("trace")(traces.trace)
app.command("log")(eventlog.log)
app.command("replay")(eventlog.replay_command)
app.command("bridge")(bridge.bridge)
app.add_typer(mcp.app, name="mcp")
app.add_typer(keys.app, name="keys")
app.command("init")(init.init)
app.add_typer(init.create_app, name="create")
app.command("run")(run.run)
for _action in ("start", "stop", "restart"):
    app.command(_action)(run._control(_action))
app.command("status")(run.status)
app.command("logs")(run.logs)
app.command("emit")(run.emit)
app.command("request")(run.request)
app.command("publish", hidden=True)(run.publish)  # the former `emit`, for one release
app.command("subscribe")(run.subscribe)


def _add_plugins() -> None:
    """Commands other packages add through the ``loom.commands`` entry point group (the
    studio's ``loom studio``): the kernel never imports them itself."""
    for entry in entry_points(group="loom.commands"):
        try:
            command = entry.load()
        except Exception as exc:  # a broken plugin must not take every command down
            app.command(entry.name, help=f"(unavailable: {exc})")(_unavailable(entry.name, exc))
            continue
        app.command(entry.name)(command)


def _unavailable(name: str, exc: Exception) -> Callable[[], None]:
    def command() -> None:
        raise LoomError(f"`loom {name}` cannot load: {type(exc).__name__}: {exc}")

    return command


_add_plugins()


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
