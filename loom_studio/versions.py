"""The editor's version history of an agent's source, kept in the project:
``.loom/editor/<agent>/<n>.py``, one file per version (1 is the source as first opened),
and ``history.jsonl`` saying when and why each was made (opened, saved, reverted).

>>> history = VersionHistory(Path(".loom/editor"), "trend")   # doctest: +SKIP
>>> history.record(source, "saved")                            # doctest: +SKIP
3
"""

from __future__ import annotations

import difflib
import json
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Version", "VersionHistory", "unified_diff"]


@dataclass(frozen=True)
class Version:
    """One version of the source."""

    number: int
    ts: float
    note: str

    @property
    def label(self) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(self.ts))
        return f"{self.number} · {clock} · {self.note}"


class VersionHistory:
    """The versions of one agent's source.

    Args:
        root: the editor's folder (``.loom/editor`` of the project).
        agent: the agent's id (a folder name: ids are letters, digits, ``_`` and ``-``).
    """

    def __init__(self, root: Path, agent: str):
        self.folder = root / agent
        self._log = self.folder / "history.jsonl"

    def versions(self) -> list[Version]:
        """Every version, oldest first."""
        if not self._log.exists():
            return []
        found = []
        for line in self._log.read_text().splitlines():
            try:
                item = json.loads(line)
                found.append(Version(int(item["version"]), float(item["ts"]), str(item["note"])))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a crash: the versions around it still count
        return [v for v in found if self.path(v.number).exists()]

    def path(self, number: int) -> Path:
        return self.folder / f"{number}.py"

    def read(self, number: int) -> str:
        """The source of one version.

        Raises:
            KeyError: there is no such version.
        """
        path = self.path(number)
        if not path.exists():
            raise KeyError(f"no version {number} in {self.folder}")
        return path.read_text()

    def latest(self) -> Version | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def record(self, source: str, note: str) -> int:
        """Keep ``source`` as a new version, unless it is the latest one already; its number."""
        latest = self.latest()
        if latest is not None and self.read(latest.number) == source:
            return latest.number
        number = (latest.number if latest else 0) + 1
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path(number).write_text(source)
        with self._log.open("a") as log:
            log.write(json.dumps({"version": number, "ts": time.time(), "note": note}) + "\n")
        return number


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    """The change from ``old`` to ``new`` as a unified diff ("" when they are the same)."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), old_name, new_name
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
