"""How a process finds the project's running bus: ``<project>/.loom/bus.json``.

The process that starts a bus (embedded or ``loom bus``) writes its TCP endpoints
and pid there and removes the file when it stops. Another process of the same
project (same ``loom.toml`` folder) reads it and joins. A lock file serialises
"is there a bus? if not, start one" between processes starting together.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from .address import BusAddress

__all__ = [
    "DiscoveryRecord",
    "discovery_lock",
    "read_discovery",
    "read_record",
    "remove_discovery",
    "write_discovery",
]

FOLDER = ".loom"
FILE = "bus.json"


def discovery_path(project_dir: Path) -> Path:
    return project_dir / FOLDER / FILE


class DiscoveryRecord:
    """What ``bus.json`` holds."""

    def __init__(
        self, address: BusAddress, pid: int, started: float, kind: str, beat: float | None = None
    ):
        self.address = address
        self.pid = pid
        self.started = started
        self.kind = kind
        #: Seconds between the broker's beats (None: it does not beat, or an older Loom).
        self.beat = beat

    def to_json(self) -> str:
        return json.dumps(
            {
                **self.address.to_dict(),
                "pid": self.pid,
                "started": self.started,
                "kind": self.kind,
                "beat": self.beat,
            },
            indent=2,
        )

    @property
    def alive(self) -> bool:
        """Whether the process that wrote the record still runs."""
        return _alive(self.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """A killed process its parent has not reaped yet still answers ``kill(pid, 0)``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (macOS): trust kill()
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


def read_discovery(project_dir: Path) -> DiscoveryRecord | None:
    """The record of a bus whose process is still alive, else None."""
    record = read_record(project_dir)
    return record if record is not None and record.alive else None


def read_record(project_dir: Path) -> DiscoveryRecord | None:
    """The record as it is, even if its process died (then its address is the one a
    new host takes over), else None."""
    path = discovery_path(project_dir)
    try:
        raw = json.loads(path.read_text())
        record = DiscoveryRecord(
            BusAddress(raw["publish"], raw["subscribe"]),
            int(raw["pid"]),
            float(raw.get("started", 0)),
            str(raw.get("kind", "embedded")),
            float(raw["beat"]) if raw.get("beat") else None,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record


def write_discovery(
    project_dir: Path, address: BusAddress, kind: str, beat: float | None = None
) -> Path:
    """Record a bus this process runs (``beat``: its broker's beat interval); returns the
    file's path."""
    path = discovery_path(project_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = DiscoveryRecord(address, os.getpid(), time.time(), kind, beat)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    # readable by this user only: it names where the bus is and which process hosts it
    descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(record.to_json())
    tmp.chmod(0o600)  # an older file of the same name kept its mode
    tmp.replace(path)
    return path


def remove_discovery(project_dir: Path) -> None:
    """Remove the record if it is this process's own."""
    path = discovery_path(project_dir)
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


@contextlib.asynccontextmanager
async def discovery_lock(project_dir: Path) -> AsyncIterator[None]:
    """An exclusive inter-process lock on the project's discovery folder.

    Waiting for it happens on a worker thread, so the event loop keeps running.
    """
    folder = project_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "bus.lock", "w") as handle:  # noqa: ASYNC230 - opening a lock file is instant
        await asyncio.to_thread(fcntl.flock, handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
