"""The package as a user gets it: ``python -m build`` makes a wheel and an sdist, and the
wheel installed into a fresh venv (no checkout on its path) runs ``loom init`` -> ``loom run``
-> ``loom tools`` and ``loom studio``, and brings the JupyterLab extension. A venv with the
kernel alone says which extra the studio needs.

Slow (two venvs filled from the package registry, pip's cache making it ~1-2 min), so it runs
once, in the parallel suite.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.timeout(900)

STUDIO_LINE = re.compile(r"Loom studio.*(http://127\.0\.0\.1:\d+/)")
#: `loom run` says this once its bus runs and its workers are started
RUN_READY = re.compile(r"worker\(s\) on")


def run(*args: str | Path, cwd: Path | None = None, timeout: float = 600) -> str:
    """Run a command with no checkout on its path; its output (fails with it)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LOOM_CONFIG")}
    env["COLUMNS"] = "200"  # the tables print whole names (a pipe is 80 columns to rich)
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--wheel", "--sdist", "--outdir", out, REPO, timeout=300)
    return out


def venv(folder: Path, requirement: str) -> Path:
    """A fresh venv with ``requirement`` installed; its bin folder."""
    run(sys.executable, "-m", "venv", folder)
    run(folder / "bin" / "python", "-m", "pip", "install", "--quiet", requirement)
    return folder / "bin"


def test_the_wheel_and_sdist_hold_the_package_its_types_and_the_lab_extension(dist: Path) -> None:
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    names = zipfile.ZipFile(wheel).namelist()
    assert "loom_kernel/py.typed" in names and "loom_studio/py.typed" in names
    lab = "share/jupyter/labextensions/@loom-studio/jupyterlab/package.json"
    assert any(n.endswith(lab) for n in names)
    assert not any(n.startswith(("tests/", "demo/", "sdk/")) for n in names)
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    extras = set(
        re.findall(r"^Provides-Extra: (\S+)$", zipfile.ZipFile(wheel).read(metadata).decode(), re.M)
    )
    assert {"studio", "jupyter", "llm", "mcp", "demo", "nats", "all"} <= extras
    assert sdist.stat().st_size > 0


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield tmp_path_factory.mktemp("user") / "hello-loom"


#: docs/getting-started.md's commands, in its order (the test checks the page still says them)
TUTORIAL = [
    "loom init hello-loom",
    "loom run",
    "loom status",
    """loom request hello.world '{"name": "Ada"}'""",
    "loom tools",
    "loom create agent prices --template producer",
    "loom subscribe 'prices.*' --count 3",
    "loom studio",
]


def test_the_getting_started_page_says_the_commands_this_test_runs() -> None:
    page = (REPO / "docs" / "getting-started.md").read_text()
    for command in TUTORIAL:
        assert command in page, command


def test_a_fresh_venv_follows_getting_started(dist: Path, project: Path, tmp_path: Path) -> None:
    [wheel] = dist.glob("*.whl")
    bin_ = venv(tmp_path / "venv", f"{wheel}[all]")
    code = "import loom_kernel; print(loom_kernel.__file__)"
    where = run(bin_ / "python", "-c", code, cwd=tmp_path)
    assert where.startswith(str(tmp_path / "venv")), where  # the wheel's, not the checkout's
    loom = str(bin_ / "loom")
    run(loom, "init", project.name, cwd=project.parent)
    with running(loom, "run", cwd=project, ready=RUN_READY):
        live(loom, project, "greeter")
        assert "greeter" in run(loom, "status", cwd=project)
        reply = run(loom, "request", "hello.world", '{"name": "Ada"}', cwd=project)
        assert "Hello, Ada!" in reply
        assert "greeter.greet" in run(loom, "tools", cwd=project)
        run(loom, "create", "agent", "prices", "--template", "producer", cwd=project)
    with running(loom, "run", cwd=project, ready=RUN_READY):
        ticks = run(loom, "subscribe", "prices.*", "--count", "3", cwd=project, timeout=120)
        assert ticks.count("prices.tick") >= 3, ticks
        with running(loom, "studio", "--port", "0", cwd=project, ready=STUDIO_LINE) as url:
            page = urllib.request.urlopen(url, timeout=30).read().decode()
            assert "<title>Loom studio</title>" in page
    extensions = run(bin_ / "jupyter", "labextension", "list")
    assert re.search(r"loom\S*\s.*enabled.*OK", extensions), extensions


@contextlib.contextmanager
def running(*args: str, cwd: Path, ready: re.Pattern[str]) -> Iterator[str]:
    """A command running until the block ends, then stopped as Ctrl-C stops it; entered once
    a line of its output matches ``ready`` (its first group, if any, is what it yields)."""
    process = subprocess.Popen(
        list(args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seen: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            seen.append(line)
            found = ready.search(line)
            if found:
                break
        else:
            raise AssertionError(f"{args[1]} exited before it was ready: {''.join(seen)[-2000:]}")
        # the rest of its output is read, so a full pipe never blocks it
        threading.Thread(target=process.stdout.read, daemon=True).start()
        yield found.group(1) if found.groups() else line
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def live(loom: str, project: Path, agent: str) -> None:
    """Until ``agent`` beats: its subscriptions are live on the bus."""
    topic = f"loom.agent.{agent}.heartbeat"
    run(loom, "subscribe", topic, "--count", "1", cwd=project, timeout=120)


def test_the_kernel_alone_says_which_extra_the_studio_needs(dist: Path, tmp_path: Path) -> None:
    [wheel] = dist.glob("*.whl")
    bin_ = venv(tmp_path / "venv", str(wheel))
    done = subprocess.run([bin_ / "loom", "studio"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0
    said = " ".join((done.stdout + done.stderr).split())  # the console wraps long lines
    assert (
        "`loom studio` needs panel, which is not installed: pip install 'loom-studio[studio]'"
        in said
    )
    probe = "import loom_kernel, sys; print([m for m in ('panel', 'litellm') if m in sys.modules])"
    assert run(bin_ / "python", "-c", probe, cwd=tmp_path).strip() == "[]"
