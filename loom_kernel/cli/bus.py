"""``loom bus``: run the project's broker as its own process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..bus.zeromq import (
    Broker,
    BusAddress,
    broker_for,
    discovery_lock,
    read_discovery,
    read_record,
    remove_discovery,
    write_discovery,
)
from ..bus.zeromq.connection import SETTLE
from ..config import LoomConfig, load_config
from ..errors import BusError
from ..protocol import reserved
from ..runtime import Runtime, open_runtime
from ..security.guard import Access

DEFAULT_URL = "tcp://127.0.0.1:7355"


def bus(
    url: Annotated[
        str | None,
        typer.Option(
            help="Where to bind (tcp://host:P uses P and P+1). Default: \\[bus] url, "
            f"else {DEFAULT_URL}."
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="The project's loom.toml.")] = None,
    stats_interval: Annotated[float, typer.Option(help="Seconds between statistics lines.")] = 5.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No statistics lines.")] = False,
) -> None:
    """Run the bus broker in the foreground until Ctrl-C or SIGTERM.

    Agents, notebooks and the studio of the same project join it with no flags
    (through .loom/bus.json). Example: `loom bus --url tcp://0.0.0.0:7355`.
    """
    settings = load_config(config)
    chosen = url or settings.bus.url or DEFAULT_URL
    asyncio.run(_serve(BusAddress.parse(chosen), settings, stats_interval, quiet))


async def _serve(address: BusAddress, settings: LoomConfig, interval: float, quiet: bool) -> None:
    console = Console(stderr=True)
    project = settings.project_dir
    async with discovery_lock(project):
        running = read_discovery(project)
        if running is not None:
            raise BusError(
                f"a bus already runs for {project} (pid {running.pid}, {running.kind}) at "
                f"{running.address.publish}: join it, or stop it first"
            )
        broker = broker_for(
            settings.bus, [address], project_dir=project,
            access=Access(settings.acl, settings.tenants),
        )  # fmt: skip
        # a restart after a crash: let the clients waiting at the address resubscribe first
        (bound,) = broker.start(settle=SETTLE if read_record(project) is not None else 0.0)
        write_discovery(project, bound, "standalone", broker.beat_interval)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    console.print(
        f"[bold green]loom bus[/] publish {bound.publish}  subscribe {bound.subscribe}  "
        f"(project {project})"
    )
    if broker.curve is not None:
        admitted = ", ".join(sorted(broker.curve.admitted.values()))
        console.print(f"CURVE: admits {admitted}", markup=False)
        if broker.guard is not None:
            restricted = ", ".join(sorted(settings.acl)) or "none"
            tenants = ", ".join(sorted(settings.tenants)) or "none"
            operators = ", ".join(sorted(broker.guard.operators))
            console.print(
                f"guard: operators {operators}; ACLs for {restricted}; tenants {tenants} "
                "(refusals on loom.security.denied.*)",
                markup=False,
            )
    try:
        async with open_runtime(settings, bus=_loopback(bound).publish) as rt:
            collector = await rt.start_span_collector()
            if collector is not None and not quiet:
                console.print(f"storing spans in {collector.store.path}")
            recorder = await rt.start_event_log()
            if recorder is not None and not quiet:
                console.print(f"recording events in {recorder.log.path}")
            await _report(rt, broker, stop, console, interval, quiet)
    finally:
        broker.close()
        remove_discovery(project)
        console.print("[bold]loom bus stopped[/]")


async def _report(
    rt: Runtime,
    broker: Broker,
    stop: asyncio.Event,
    console: Console,
    interval: float,
    quiet: bool,
) -> None:
    """Publish the broker's statistics (and print them) until told to stop."""
    started = time.monotonic()
    last = broker.statistics()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        stats = broker.statistics()
        rt.context.endpoint.report(reserved.BROKER_STATS, stats.to_dict(), type="stats")
        if not quiet:
            rate = (stats.frames_out - last.frames_out) / 3 / interval
            console.print(
                f"{time.monotonic() - started:8.0f}s  events in {stats.frames_in // 3:,}  "
                f"out {stats.frames_out // 3:,}  ~{rate:,.0f} ev/s"
            )
        last = stats


def _loopback(address: BusAddress) -> BusAddress:
    """A wildcard bind (0.0.0.0) is reached on loopback by a local client."""
    return BusAddress(
        address.publish.replace("0.0.0.0", "127.0.0.1"),
        address.subscribe.replace("0.0.0.0", "127.0.0.1"),
    )
