"""``loom studio``: serve the studio for the project's bus on localhost."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from loom_kernel import LoomError, load_config


def studio(
    port: Annotated[int, typer.Option(help="Port (0: a free one).")] = 5006,
    address: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    config: Annotated[Path | None, typer.Option(help="The project's loom.toml.")] = None,
) -> None:
    """Serve the studio (dashboard and traces) for the project's bus; Ctrl-C stops it.

    It joins the running bus by discovery (or starts one that agents then join) and
    reads traces from the project's span store. Example: `loom studio --port 5006`.
    """
    asyncio.run(_serve(load_config(config), port, address))


async def _serve(settings, port: int, address: str) -> None:
    from .app import serve
    from .feed import StudioFeed

    console = Console(stderr=True)
    feed = await StudioFeed().open(settings)
    try:
        server = serve(settings, port=port, address=address, feed=feed)
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
    console.print(f"[bold green]Loom studio[/]: http://{address}:{server.port}/  (Ctrl-C stops it)")
    try:
        await stop.wait()
    finally:
        server.stop()
        await feed.aclose()
