"""A durable subscription's local journal: what its handler finished, per stream, at once.

The cursor in the event log is committed every ``commit_interval`` (a message on the
bus): a subscriber killed between two commits would get the events handled since the
last one again. The journal closes that window for a subscriber restarted on the same
machine and project: after each handler call the subscription stores the event's
sequence number in a memory-mapped file, a memory write that the operating system keeps
when the process is killed (``kill -9`` included; a power cut is another matter, see
``docs/durability.md``). On a restart the journal's positions are merged with the log's
cursor, so nothing handled before the kill is delivered again.

Two files per cursor, in ``[eventlog] journal_dir``:

- ``<name>.streams``: one line per stream, ``source <TAB> topic <TAB> epoch``; the line's
  number is the stream's slot. Appended (one ``write``) before the slot is first used.
- ``<name>.seqs``: slot ``i`` holds the last sequence number handled on stream ``i``,
  8 bytes little-endian, written in place through ``mmap``.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import mmap
import os
import re
import struct
from pathlib import Path

from .wire import Stream

__all__ = ["CursorJournal", "JournalBusy"]

log = logging.getLogger("loom.eventlog")
_SLOT = struct.Struct("<q")
_GROW = 1024  # slots added at a time
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


class JournalBusy(OSError):
    """Another process holds the journal (the same agent id runs twice)."""


class CursorJournal:
    """The journal of one cursor (see the module docstring).

    Args:
        folder: where the journals live (created when missing).
        cursor: the cursor's name (``<agent id>:<pattern>``).

    Raises:
        JournalBusy: another process has this cursor's journal open.
    """

    def __init__(self, folder: str | os.PathLike[str], cursor: str):
        base = Path(folder)
        base.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha1(cursor.encode()).hexdigest()[:10]  # a name, not a secret
        stem = f"{_UNSAFE.sub('_', cursor)[:80]}-{digest}"
        self.path = base / f"{stem}.seqs"
        self._streams_path = base / f"{stem}.streams"
        self._slots: dict[Stream, int] = {}
        self._skipped: set[Stream] = set()
        self._load_streams()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise JournalBusy(f"{self.path} is open in another process") from None
        self._map: mmap.mmap | None = None
        self._map_slots(max(len(self._slots), 1))
        self._streams = open(self._streams_path, "ab", buffering=0)  # noqa: SIM115

    def _load_streams(self) -> None:
        if not self._streams_path.exists():
            return
        data = self._streams_path.read_bytes()
        whole = data.rfind(b"\n") + 1
        if whole < len(data):  # a line cut short by a crash: its slot was never written
            os.truncate(self._streams_path, whole)
        for line in data[:whole].split(b"\n")[:-1]:
            source, topic, epoch = line.decode().split("\t")
            self._slots[(source, topic, epoch)] = len(self._slots)

    def _map_slots(self, wanted: int) -> None:
        size = os.fstat(self._fd).st_size
        needed = -(-wanted // _GROW) * _GROW * _SLOT.size
        if needed > size:
            os.ftruncate(self._fd, needed)  # new slots read 0: nothing handled
            size = needed
        if self._map is not None:
            self._map.close()
        self._map = mmap.mmap(self._fd, size)

    def positions(self) -> dict[Stream, int]:
        """The last sequence number handled per stream, as the journal keeps it."""
        assert self._map is not None
        return {
            stream: seq
            for stream, slot in self._slots.items()
            if (seq := _SLOT.unpack_from(self._map, slot * _SLOT.size)[0]) > 0
        }

    def mark(self, stream: Stream, seq: int) -> None:
        """``seq`` on ``stream`` was handled."""
        slot = self._slots.get(stream)
        if slot is None:
            slot = self._add(stream)
            if slot is None:
                return
        assert self._map is not None
        _SLOT.pack_into(self._map, slot * _SLOT.size, seq)

    def _add(self, stream: Stream) -> int | None:
        if any("\t" in part or "\n" in part for part in stream):  # not a Loom id: the log's
            if stream not in self._skipped:
                self._skipped.add(stream)
                log.warning("stream %r is not journalled (a tab or newline in it)", stream)
            return None  # cursor alone keeps it (at least once)
        slot = len(self._slots)
        if (slot + 1) * _SLOT.size > len(self._map or b""):
            self._map_slots(slot + 1)
        self._streams.write(("\t".join(stream) + "\n").encode())
        self._slots[stream] = slot
        return slot

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        self._streams.close()
        os.close(self._fd)
