"""Joining a project's running bus from a command, without starting one."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from ..bus.connect import uses_nats
from ..bus.zeromq import read_discovery
from ..config import LoomConfig, load_config
from ..errors import BusError
from ..runtime import Runtime, open_runtime


def running_bus(settings: LoomConfig) -> bool:
    """True when the project names a bus (a NATS one is always there to join), or a
    discovery file says one runs."""
    if uses_nats(settings.bus):
        return True
    return settings.bus.url is not None or read_discovery(settings.project_dir) is not None


@contextlib.asynccontextmanager
async def join_running_bus(settings: LoomConfig) -> AsyncIterator[Runtime | None]:
    """A runtime on the project's running bus, or None when no bus answers.

    Commands that only look (``loom tools``) must not start a bus of their own: a
    short-lived embedded bus would be joined by agents starting at that moment.
    """
    if not running_bus(settings):
        yield None
        return
    joining = settings.model_copy(
        update={"bus": settings.bus.model_copy(update={"mode": "connect"})}
    )
    try:
        rt = await open_runtime(joining)
    except BusError:
        yield None
        return
    try:
        yield rt
    finally:
        await rt.aclose()


def load_project(config: Path | None) -> LoomConfig:
    return load_config(config)


def stop_event() -> asyncio.Event:
    """An event set by Ctrl-C or SIGTERM: a long-running command's cue to stop cleanly."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return stop
