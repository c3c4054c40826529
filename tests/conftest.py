"""Shared fixtures: every test gets its own project folder, so discovery files and
embedded buses never leak between tests running in parallel."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from hypothesis import settings

from loom_kernel import Runtime, open_runtime

REPO = Path(__file__).resolve().parent.parent

# Property tests draw the same examples on every run (derived from each test), so a run
# passes or fails on the code, never on the draw. To hunt for new failing examples, draw
# afresh: HYPOTHESIS_PROFILE=explore pytest tests/... (and keep what it finds as @example).
settings.register_profile("deterministic", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh project folder with a default ``loom.toml``; the working directory."""
    (tmp_path / "loom.toml").write_text("[runtime]\nheartbeat_interval = 0.2\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LOOM_CONFIG", raising=False)
    return tmp_path


@pytest.fixture
async def rt(project: Path) -> AsyncIterator[Runtime]:
    """A runtime on an embedded bus, private to the test."""
    async with open_runtime(project / "loom.toml") as runtime:
        yield runtime


def free_port() -> int:
    """A TCP port that is free now (and its successor, for the subscribe side)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 65000:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port


def python_env() -> dict[str, str]:
    """Environment for child Python processes: the repo importable (coverage follows them)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


PYTHON = sys.executable


WAIT = 5.0  # seconds: the bound of every wait for something that should happen promptly


async def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``condition`` on the loop until it holds; fails the test after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout:g} s")
        await asyncio.sleep(0.005)
