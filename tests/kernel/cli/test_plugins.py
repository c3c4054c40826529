"""Commands other packages add to ``loom`` through the ``loom.commands`` entry points."""

from __future__ import annotations

import subprocess

from tests.conftest import PYTHON, python_env


def run(code: str) -> str:
    done = subprocess.run(
        [PYTHON, "-c", code], env=python_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_studio_adds_loom_studio_without_the_kernel_importing_it() -> None:
    out = run(
        "import sys; from loom_kernel.cli.app import app; "
        "print(sorted(c.name for c in app.registered_commands if c.name == 'studio'), "
        "'panel' in sys.modules, 'bokeh' in sys.modules)"
    )
    # registered, and loading every command imported neither Panel nor Bokeh (CLI start-up)
    assert out == "['studio'] False False"


def test_loom_studio_help_describes_the_command() -> None:
    done = subprocess.run(
        [PYTHON, "-m", "loom_kernel.cli.app", "studio", "--help"],
        env={**python_env(), "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "Serve the studio" in done.stdout and "--port" in done.stdout
