"""``loom studio``: serve the studio for the project's bus on localhost."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from loom_kernel import LoomError, load_config
from loom_kernel.extras import require

if TYPE_CHECKING:
    from .tenant import TenantView

PARENT_CHECK_S = 2.0  # seconds between two looks at whether Jupyter still runs


def studio(
    port: Annotated[int, typer.Option(help="Port (0: a free one).")] = 5006,
    address: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    config: Annotated[Path | None, typer.Option(help="The project's loom.toml.")] = None,
    project: Annotated[
        Path | None,
        typer.Option(
            help="The project's folder: its loom.toml, or the defaults there.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    tenant: Annotated[
        str | None,
        typer.Option(help="Show only this [tenants.<name>]'s agents and events (CURVE bus)."),
    ] = None,
) -> None:
    """Serve the studio (dashboard, traces, topics, editor) for the project's bus; Ctrl-C stops it.

    It joins the running bus by discovery (or starts one that agents then join) and
    reads traces from the project's span store. Example: `loom studio --port 5006`.
    """
    require("panel", "`loom studio`")
    if project is not None:  # the project is where its files are found: work from there
        os.chdir(project)
    from .access import SECRET_ENV  # here: `loom --help` does not load Tornado

    # behind Jupyter (loom_studio.lab.proxy): only requests carrying this secret get in;
    # taken out of the environment so no process the studio starts inherits it
    secret = os.environ.pop(SECRET_ENV, None)
    from .tenant import TenantView

    settings = load_config(config)
    view = TenantView.of(settings, tenant) if tenant is not None else None  # a typo fails here
    asyncio.run(_serve(settings, port, address, secret, view))


async def _serve(
    settings, port: int, address: str, secret: str | None = None, view: TenantView | None = None
) -> None:
    from .app import serve
    from .feed import StudioFeed

    console = Console(stderr=True)
    feed = await StudioFeed(tenant=view).open(settings)
    try:
        server = serve(settings, port=port, address=address, feed=feed, secret=secret)
    except OSError as exc:
        await feed.aclose()
        raise LoomError(
            f"cannot listen on {address}:{port} ({exc.strerror}): pick another --port (0: any)"
        ) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    where = "behind Jupyter only" if secret else "Ctrl-C stops it"
    if view is not None:
        where += f"; tenant {view.name}: its agents and {view.prefix}.* only"
    console.print(f"[bold green]Loom studio[/]: http://{address}:{server.port}/  ({where})")
    parent = os.getppid()
    try:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=PARENT_CHECK_S)
            if secret and os.getppid() != parent:
                break  # behind Jupyter, and Jupyter is gone (killed): no one can reach us
    finally:
        server.stop()
        await feed.aclose()
