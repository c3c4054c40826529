"""`make demo` runs `python -m demo.market_analyst`: the six agents start, plan by
rules offline, and stop cleanly with a summary."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import pytest

from demo.market_analyst.app import PROJECT
from tests.conftest import PYTHON, REPO, python_env

pytestmark = [pytest.mark.timeout(120), pytest.mark.multiprocess]


def demo_project(tmp_path: Path) -> Path:
    """A copy of the demo's loom.toml in ``tmp_path``: the test's bus and traces stay there."""
    text = (PROJECT / "loom.toml").read_text(encoding="utf-8")
    for old, new in (
        ('cwd = "../.."', f"cwd = {str(REPO)!r}"),
        ("ticks_per_second = 5.0", "ticks_per_second = 20.0"),
        ("plan_every_sec = 2.0", "plan_every_sec = 0.5"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    config = tmp_path / "loom.toml"
    config.write_text(text, encoding="utf-8")
    return config


def demo_env() -> dict[str, str]:
    env = python_env()
    env.pop("DEEPSEEK_API_KEY", None)
    env["COLUMNS"] = "120"
    return env


def test_the_demo_runs_offline_and_stops_with_a_summary(tmp_path: Path) -> None:
    config = demo_project(tmp_path)
    env = demo_env()
    done = subprocess.run(
        [PYTHON, "-m", "demo.market_analyst", "--duration", "8", "--config", str(config)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    summary = re.search(r"stopped: plans by LLM (\d+), by rules (\d+)", done.stdout)
    assert summary, done.stdout
    assert int(summary.group(1)) == 0 and int(summary.group(2)) > 0
    assert "Market Analyst" in done.stdout
    assert "DEEPSEEK_API_KEY" in done.stdout + done.stderr  # the fallback is said, once


def test_ctrl_c_stops_the_demo_and_its_studio_cleanly(tmp_path: Path) -> None:
    # regression: Panel's server took SIGINT, so Ctrl-C ended in "RuntimeError: Event loop
    # stopped before Future completed", no summary, exit 1 and a stale .loom/bus.json
    config = demo_project(tmp_path)
    proc = subprocess.Popen(
        [PYTHON, "-m", "demo.market_analyst", "--no-view", "--studio-port", "0",
         "--config", str(config)],
        cwd=REPO, env=demo_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:  # until the studio serves (the last thing started)
            lines.append(line)
            if "Market Analyst" in line:
                break
        assert (tmp_path / ".loom" / "bus.json").exists()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines) + out
    assert proc.returncode == 0, err[-3000:]
    assert "Studio" in out and "stopped: plans by LLM" in out
    assert "Traceback" not in err and "RuntimeError" not in err
    assert not (tmp_path / ".loom" / "bus.json").exists()
