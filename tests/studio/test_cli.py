"""``python -m loom_studio`` (``loom studio``) as Jupyter starts it: behind the proxy's
secret, and gone with the Jupyter server, even a killed one."""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from loom_studio.access import SECRET_ENV, SECRET_HEADER
from tests.conftest import PYTHON, free_port, python_env

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(90)]

STARTUP = 45.0  # seconds for the studio to answer (Panel loads)


def status(url: str, **headers: str) -> int | None:
    """The HTTP status of a GET, None while nothing listens."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s")
        time.sleep(0.1)


def test_behind_jupyter_the_studio_needs_the_secret_and_ends_with_its_parent(
    project: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/api/live"
    studio = f'"{PYTHON}" -m loom_studio --port {port} --project "{project}"'
    # a stand-in for the Jupyter server: the parent of the studio, killed without warning
    parent = subprocess.Popen(
        ["sh", "-c", f"{studio} & echo $!; wait"],
        env={**python_env(), SECRET_ENV: "s3cret"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        pid = int(parent.stdout.readline())
        wait_for(lambda: status(url) is not None, STARTUP, "the studio did not answer")
        assert status(url) == 403
        assert status(url, **{SECRET_HEADER: "s3cret"}) == 200
    finally:
        parent.kill()
        parent.wait(timeout=10)

    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_for(gone, 15, "the studio outlived the process that started it")
