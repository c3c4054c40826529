"""``loom log`` and ``loom replay``: the event log on its own, and replaying from it."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ..bus.connect import uses_nats
from ..bus.nats.client import NatsClient
from ..config import LoomConfig
from ..durability import EventLog, ReplayPlan, open_event_log, replay
from ..durability.jetstream_history import StreamHistory
from ..errors import LoomError
from ..protocol.topics import compile_pattern, validate_topic
from ..runtime import Runtime
from .project import join_running_bus, load_project, stop_event

ConfigOption = Annotated[Path | None, typer.Option(help="The project's loom.toml.")]
_AGO = re.compile(r"^-?(\d+(?:\.\d+)?)([smhd])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def log(
    config: ConfigOption = None,
    stats_interval: Annotated[float, typer.Option(help="Seconds between statistics lines.")] = 5.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No statistics lines.")] = False,
) -> None:
    """Record the project's bus into the event log until Ctrl-C or SIGTERM.

    For a bus whose process does not run the log itself (`[eventlog] embedded = false`).
    Example: `loom log --stats-interval 1`.
    """
    settings = load_project(config)
    asyncio.run(_record(settings, stats_interval, quiet))


async def _record(settings: LoomConfig, interval: float, quiet: bool) -> None:
    console = Console(stderr=True)
    path = settings.project_path(settings.eventlog.path)
    stop = stop_event()
    async with _joined(settings) as rt:
        service = await open_event_log(settings.eventlog, path, rt.client)
        console.print(f"[bold green]loom log[/] recording the project's bus into {path}")
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
                if not quiet:
                    s = service.statistics()
                    console.print(
                        f"recorded {s.recorded:,}  pending {s.pending:,}  dropped {s.dropped:,}  "
                        f"~{s.rate:,.0f} ev/s"
                    )
        finally:
            await service.aclose()
    console.print("[bold]loom log stopped[/]")


def replay_command(
    since: Annotated[
        str, typer.Option("--from", help="Start: ISO time, epoch seconds, or '10m' ago (s/m/h/d).")
    ],
    until: Annotated[
        str | None, typer.Option("--to", help="End, written as --from (default: now).")
    ] = None,
    topics: Annotated[
        str | None, typer.Option(help="Topic patterns, comma-separated (default: all).")
    ] = None,
    speed: Annotated[
        float, typer.Option(min=0, help="1: as recorded; 10: ten times faster; 0: at once.")
    ] = 1.0,
    into: Annotated[
        str, typer.Option("--into", help="The namespace to replay into (one topic segment).")
    ] = "replay",
    config: ConfigOption = None,
) -> None:
    """Publish recorded events again, into an isolated namespace.

    Events go out on `replay.<NAMESPACE>.<topic>`: agents of a runtime opened with
    `open_runtime(namespace=NAMESPACE)` see them as live; the rest of the system does not.
    Example: `loom replay --from 10m --topics 'orders.*' --speed 0 --into what-if`.
    """
    settings = load_project(config)
    plan = ReplayPlan(
        namespace=_namespace(into),
        since=parse_when(since, "--from"),
        until=parse_when(until, "--to") if until is not None else None,
        topics=_topics(topics),
        speed=speed,
    )
    asyncio.run(_replay(settings, plan))


async def _replay(settings: LoomConfig, plan: ReplayPlan) -> None:
    console = Console(stderr=True)
    if uses_nats(settings.bus):  # JetStream's stream is the log
        async with _joined(settings) as rt:
            assert isinstance(rt.client, NatsClient)
            history = StreamHistory(rt.client, settings.bus.stream)
            result = await replay(history, rt.client, plan)
            await rt.client.flush()
        console.print(
            f"replayed {result.published:,} events from stream {settings.bus.stream} into "
            f"replay.{plan.namespace}.* in {result.seconds:.2f} s"
        )
        return
    path = settings.project_path(settings.eventlog.path)
    if not path.is_file():
        raise LoomError(
            f"no event log at {path}: events are recorded while [eventlog] enabled = true "
            "(by the bus's process) or `loom log` runs"
        )
    async with _joined(settings) as rt:
        result = await replay(EventLog(path), rt.client, plan)
        await asyncio.sleep(0.2)  # the PUB socket sends what it holds before it closes
    console.print(
        f"replayed {result.published:,} events into replay.{plan.namespace}.* "
        f"in {result.seconds:.2f} s"
    )


def parse_when(text: str, option: str) -> float:
    """Epoch seconds from an ISO time, epoch seconds, or a duration ago (``10m``)."""
    text = text.strip()
    ago = _AGO.match(text)
    if ago:
        return time.time() - float(ago[1]) * _UNIT[ago[2]]
    with contextlib.suppress(ValueError):
        return float(text)
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise LoomError(
            f"{option} {text!r}: use an ISO time (2026-01-31T09:30), epoch seconds, or a "
            "duration ago such as 90s, 10m, 2h, 1d"
        ) from None


def _topics(text: str | None) -> list[str] | None:
    if not text:
        return None
    patterns = [part.strip() for part in text.split(",") if part.strip()]
    for pattern in patterns:
        compile_pattern(pattern)  # TopicError names the bad one
    return patterns


def _namespace(text: str) -> str:
    if "." in validate_topic(text):
        raise LoomError(f"--into {text!r}: a namespace is one topic segment, e.g. what-if")
    return text


@contextlib.asynccontextmanager
async def _joined(settings: LoomConfig) -> AsyncIterator[Runtime]:
    async with join_running_bus(settings) as rt:
        if rt is None:
            raise LoomError(
                "no bus runs for this project: start it first (`loom bus`, `loom run`, or a "
                "notebook that opens a runtime)"
            )
        yield rt
