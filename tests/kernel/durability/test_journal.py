"""The local journal of a durable subscription (``loom_kernel/durability/journal.py``)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from loom_kernel.durability.journal import CursorJournal

STREAM = ("pub-1", "load.x", "")


def test_positions_survive_a_reopen(tmp_path: Path) -> None:
    journal = CursorJournal(tmp_path, "sink:load.*")
    journal.mark(STREAM, 7)
    journal.mark(("pub-2", "load.y", "e1"), 3)
    journal.mark(STREAM, 8)
    journal.close()
    again = CursorJournal(tmp_path, "sink:load.*")
    assert again.positions() == {STREAM: 8, ("pub-2", "load.y", "e1"): 3}
    again.close()


def test_many_streams_grow_the_file(tmp_path: Path) -> None:
    journal = CursorJournal(tmp_path, "sink:load.*")
    streams = [(f"pub-{i}", f"load.{i}", "") for i in range(3000)]
    for i, stream in enumerate(streams):
        journal.mark(stream, i + 1)
    journal.close()
    again = CursorJournal(tmp_path, "sink:load.*")
    assert again.positions() == {stream: i + 1 for i, stream in enumerate(streams)}
    again.close()


def test_cursors_have_their_own_files(tmp_path: Path) -> None:
    a, b = CursorJournal(tmp_path, "a:load.*"), CursorJournal(tmp_path, "a:load.>")
    a.mark(STREAM, 5)
    assert b.positions() == {}
    assert a.path != b.path
    a.close()
    b.close()


def test_a_second_holder_is_refused(tmp_path: Path) -> None:
    journal = CursorJournal(tmp_path, "sink:load.*")
    child = (
        "import sys; from loom_kernel.durability.journal import CursorJournal, JournalBusy\n"
        "try:\n    CursorJournal(sys.argv[1], 'sink:load.*')\n"
        "except JournalBusy as exc:\n    print('busy', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert out.stdout.startswith("busy"), out.stderr
    journal.close()


def test_a_stream_it_cannot_name_is_left_to_the_log(tmp_path: Path) -> None:
    journal = CursorJournal(tmp_path, "sink:load.*")
    journal.mark(("odd\tsource", "load.x", ""), 4)
    journal.mark(STREAM, 2)
    assert journal.positions() == {STREAM: 2}
    journal.close()


def test_marks_survive_kill_9(tmp_path: Path) -> None:
    """The marks are memory writes to a shared mapping: the kernel keeps them."""
    child = (
        "import os, sys\nfrom loom_kernel.durability.journal import CursorJournal\n"
        "j = CursorJournal(sys.argv[1], 'sink:load.*')\n"
        "for seq in range(1, 50001):\n    j.mark(('pub-1', 'load.x', ''), seq)\n"
        "print('marked', flush=True)\nos.kill(os.getpid(), 9)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL and proc.stdout == "marked\n", proc.stderr
    journal = CursorJournal(tmp_path, "sink:load.*")  # the lock went with the process
    assert journal.positions() == {STREAM: 50000}
    journal.close()


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    journal = CursorJournal(tmp_path, "sink:load.*")
    journal.mark(STREAM, 9)
    streams = journal.path.with_suffix(".streams")
    journal.close()
    with open(streams, "ab") as f:
        f.write(b"pub-9\tload")  # a write cut short
    again = CursorJournal(tmp_path, "sink:load.*")
    assert again.positions() == {STREAM: 9}
    again.mark(("pub-2", "load.y", ""), 1)  # the next stream gets a whole line
    again.close()
    assert streams.read_text() == "pub-1\tload.x\t\npub-2\tload.y\t\n"
