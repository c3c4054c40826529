"""`make demo`: demo/hello_agents.py runs, every agent works, and it stops cleanly."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.conftest import PYTHON, REPO, python_env

DEMO = REPO / "demo" / "hello_agents.py"
AGENTS = ("ticker", "analyst", "trader")
SUMMARY_LINE = re.compile(r"^\s*(\w+)\s+handled\s+(\d+)\s+emitted\s+(\d+)\s+errors\s+(\d+)", re.M)


def demo_env() -> dict[str, str]:
    env = python_env()
    env.pop("LOOM_CONFIG", None)
    env["COLUMNS"] = "120"
    return env


def summary(output: str) -> dict[str, tuple[int, int, int]]:
    """``{agent: (handled, emitted, errors)}`` from the demo's closing summary."""
    _, found, tail = output.rpartition("summary after")
    assert found, f"no summary in the output:\n{output}"
    return {m[1]: (int(m[2]), int(m[3]), int(m[4])) for m in SUMMARY_LINE.finditer(tail)}


def assert_every_agent_worked(output: str) -> None:
    report = summary(output)
    assert set(report) == set(AGENTS), output
    for agent, (handled, emitted, errors) in report.items():
        assert handled > 0, f"{agent} handled nothing:\n{output}"
        assert emitted > 0, f"{agent} emitted nothing:\n{output}"
        assert errors == 0, f"{agent} had errors:\n{output}"


def test_demo_runs_for_its_duration_and_every_agent_handles_and_emits(tmp_path: Path):
    # No loom.toml in the folder: the demo must work on embedded defaults.
    done = subprocess.run(
        [PYTHON, str(DEMO), "--duration", "3"],
        cwd=tmp_path,
        env=demo_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "bus (embedded): publish tcp://127.0.0.1:" in done.stdout
    assert_every_agent_worked(done.stdout)
    assert "paper book:" in done.stdout
    assert not (tmp_path / ".loom" / "bus.json").exists(), "the discovery file outlived the bus"


def test_demo_stops_cleanly_on_ctrl_c(tmp_path: Path):
    # "Ctrl-C to stop" is printed once the agents have started.
    proc = subprocess.Popen(
        [PYTHON, str(DEMO)],
        cwd=tmp_path,
        env=demo_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_line(proc, "Ctrl-C to stop", timeout=30)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    report = summary(out)
    assert set(report) == set(AGENTS), out
    assert all(errors == 0 for _, _, errors in report.values()), out
    assert report["ticker"][1] > 0, "the ticker's first tick precedes any signal handling"
    assert not (tmp_path / ".loom" / "bus.json").exists(), "the discovery file outlived the bus"


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float) -> None:
    """Read the child's stdout until a line contains ``text``; fail after ``timeout`` s.

    A reader thread hands lines over: select() on a buffered text pipe can miss a line
    already read into Python's buffer.
    """
    assert proc.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout

    def pump() -> None:
        for line in iter(stdout.readline, ""):
            lines.put(line)
            if text in line:
                return
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=remaining)
        except queue.Empty:
            break
        if not line:
            break
        if text in line:
            return
    raise AssertionError(f"the demo never printed {text!r} (exit code {proc.poll()})")
