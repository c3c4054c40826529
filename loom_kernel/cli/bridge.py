"""``loom bridge``: the project's ZeroMQ bus and a NATS cluster, joined for chosen topics."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..bus.connect import uses_nats
from ..bus.nats.client import NatsClient
from ..bus.nats.connection import nats_options
from ..config import LoomConfig
from ..errors import ConfigError
from ..ops.bridge import Bridge
from ..runtime import open_runtime
from .project import load_project, stop_event


def _patterns(text: list[str]) -> list[str]:
    return [p.strip() for item in text for p in item.split(",") if p.strip()]


def bridge(
    nats: Annotated[
        list[str],
        typer.Option("--nats", help="A NATS server of the cluster (nats://host:4222); repeatable."),
    ],
    out: Annotated[
        list[str] | None,
        typer.Option("--out", help="Topic patterns sent from this bus to NATS (comma-separated)."),
    ] = None,
    into: Annotated[
        list[str] | None,
        typer.Option("--in", help="Topic patterns taken from NATS onto this bus."),
    ] = None,
    stats_interval: Annotated[float, typer.Option(help="Seconds between statistics lines.")] = 5.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No statistics lines.")] = False,
    config: Annotated[Path | None, typer.Option(help="The project's loom.toml.")] = None,
) -> None:
    """Join the project's ZeroMQ bus to a NATS cluster for chosen topics, both ways, until
    Ctrl-C. Events keep their ids, sources and trace context; requests get their replies
    back across; an event never crosses twice (no loops).

    Example: `loom bridge --nats nats://nats.internal:4222 --out 'orders.*' --in 'signals.*'`.
    NATS credentials come from the project's bus settings (credentials, nkey, user, tls_*).
    """
    settings = load_project(config)
    if uses_nats(settings.bus):
        raise ConfigError(
            "`loom bridge` joins a ZeroMQ bus to NATS, and this project is on NATS already "
            '([bus] backend = "nats"): run it from the project whose bus is ZeroMQ'
        )
    asyncio.run(_bridge(settings, nats, _patterns(out or []), _patterns(into or []),
                        stats_interval, quiet))  # fmt: skip


async def _bridge(
    settings: LoomConfig,
    servers: list[str],
    out: list[str],
    into: list[str],
    interval: float,
    quiet: bool,
) -> None:
    console = Console(stderr=True)
    stop = stop_event()
    options = nats_options(settings.bus, settings.project_dir, servers)
    async with open_runtime(settings) as rt:
        nats = NatsClient(options, name="bridge")
        await nats.connect(settings.bus.connect_timeout)
        try:
            async with Bridge(rt.client, nats, out=out, into=into) as joined:
                where = rt.address.publish if rt.address else "the bus"
                console.print(
                    f"[bold green]loom bridge[/] {where} ⇄ {', '.join(servers)}: out "
                    f"{', '.join(out) or '-'}; in {', '.join(into) or '-'}"
                )
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), interval)
                    if not quiet:
                        s = joined.statistics()
                        console.print(
                            f"to NATS {s.a_to_b:,}  from NATS {s.b_to_a:,}  replies {s.replies:,}"
                            f"  loops stopped {s.loops:,}  failed {s.failed:,}"
                        )
        finally:
            await nats.aclose()
    console.print("[bold]loom bridge stopped[/]")
