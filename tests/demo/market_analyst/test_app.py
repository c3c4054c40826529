"""`make demo` runs `python -m demo.market_analyst`: the six agents start, plan by
rules offline, and stop cleanly with a summary."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from demo.market_analyst.app import PROJECT
from tests.conftest import PYTHON, REPO, python_env

pytestmark = [pytest.mark.timeout(120), pytest.mark.multiprocess]


def test_the_demo_runs_offline_and_stops_with_a_summary(tmp_path: Path) -> None:
    text = (PROJECT / "loom.toml").read_text(encoding="utf-8")
    for old, new in (
        ('cwd = "../.."', f"cwd = {str(REPO)!r}"),
        ("ticks_per_second = 5.0", "ticks_per_second = 20.0"),
        ("plan_every_sec = 2.0", "plan_every_sec = 0.5"),
    ):
        assert old in text, old
        text = text.replace(old, new)
    config = tmp_path / "loom.toml"  # a copy: this test's bus and traces stay in tmp_path
    config.write_text(text, encoding="utf-8")
    env = python_env()
    env.pop("DEEPSEEK_API_KEY", None)
    env["COLUMNS"] = "120"
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
