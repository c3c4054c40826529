"""`loom run` and friends, as real commands: a supervisor in a subprocess, agents in
worker processes, controlled and observed from other `loom` processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import PYTHON, python_env
from tests.support.nats import nats_running

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(180)]

AGENTS = """
import os
from loom_kernel import Agent, on_event

class Echo(Agent):
    @on_event("echo.*")
    async def echo(self, event, ctx):
        ctx.log.info("echoing %s", event.data)
        if event.reply_to:
            await ctx.reply(event, {"by": self.id, "pid": os.getpid()})

class Crashy(Agent):
    @on_event("crash.now")
    async def crash(self, event, ctx):
        ctx.log.warning("crashing on request")
        os._exit(3)
"""

TOML = """
[runtime]
heartbeat_interval = 0.3

[agents.echo]
module = "agents.echo:Echo"

[agents.crashy]
module = "agents.echo:Crashy"
group = "risky"

[agents.pair]
module = "agents.echo:Echo"
group = "risky"
"""


def make_project(folder: Path, toml: str = TOML) -> Path:
    (folder / "agents").mkdir(parents=True, exist_ok=True)
    (folder / "agents" / "__init__.py").write_text("")
    (folder / "agents" / "echo.py").write_text(AGENTS)
    (folder / "loom.toml").write_text(toml)
    return folder


def loom(project: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**python_env(), "COLUMNS": "160"}
    env.pop("LOOM_CONFIG", None)
    return subprocess.run(
        [PYTHON, "-m", "loom_kernel.cli.app", *args],
        cwd=project, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def status(project: Path) -> dict[str, dict]:
    """``loom status --json`` by agent; empty while the bus is not up yet."""
    done = loom(project, "status", "--json", "--wait", "1.2")
    if done.returncode != 0:
        assert "no bus runs" in done.stderr, done.stderr
        return {}
    return {row["agent"]: row for row in json.loads(done.stdout)}


def wait_for(condition, timeout: float = 30.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(every)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@contextlib.contextmanager
def supervise(project: Path, agents: set[str]) -> Iterator[subprocess.Popen[str]]:
    """`loom run` in ``project`` until the block ends, once ``agents`` report."""
    env = {**python_env()}
    env.pop("LOOM_CONFIG", None)
    proc = subprocess.Popen(
        [PYTHON, "-m", "loom_kernel.cli.app", "run"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: agents <= set(status(project)), timeout=60)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def supervised(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """`loom run` of the project, on an embedded ZeroMQ bus, or (``"nats"``, indirect
    parametrization) on a real nats-server."""
    if getattr(request, "param", "zeromq") == "zeromq":
        project = make_project(tmp_path / "proj")
        with supervise(project, {"echo", "crashy", "pair"}) as proc:
            yield project, proc
        return
    with nats_running(tmp_path) as server:
        toml = TOML + f'\n[bus]\nbackend = "nats"\nservers = ["{server.url}"]\n'
        project = make_project(tmp_path / "proj", toml)
        with supervise(project, {"echo", "crashy", "pair"}) as proc:
            yield project, proc


def test_on_a_curve_bus_only_operators_stop_agents(tmp_path: Path) -> None:
    secured = '[bus]\nsecurity = "curve"\noperators = ["admin"]\n' + TOML
    project = make_project(tmp_path / "proj", secured)
    assert loom(project, "keys", "generate").returncode == 0  # broker and loom
    with supervise(project, {"echo", "crashy", "pair"}):
        refused = loom(project, "stop", "echo")
        assert refused.returncode == 1
        said = " ".join(refused.stderr.split())
        assert "the bus refused: AccessDenied" in said, said
        assert "only operators (admin) may publish loom.supervisor.control" in said
        assert status(project)["echo"]["status"] in ("running", "idle")


@pytest.mark.parametrize("supervised", ["zeromq", "nats"], indirect=True)
def test_run_status_publish_logs_stop_restart_and_a_crash(supervised) -> None:
    project, proc = supervised
    rows = status(project)
    assert rows["crashy"]["worker"] == rows["pair"]["worker"] == "risky"
    assert rows["crashy"]["pid"] == rows["pair"]["pid"] != rows["echo"]["pid"]

    reply = loom(project, "request", "echo.hi", '{"n": 1}')
    assert reply.returncode == 0, reply.stderr
    assert json.loads(reply.stdout)["by"] in ("echo", "pair")

    logs = wait_for(
        lambda: "echoing {'n': 1}" in (out := loom(project, "logs", "echo").stdout) and out
    )
    assert "INFO" in logs

    # a crash is restarted, with its group
    before = rows["crashy"]["pid"]
    assert loom(project, "emit", "crash.now").returncode == 0
    after = wait_for(
        lambda: (r := status(project))["crashy"]["restarts"] >= 1 and r["crashy"]["pid"] and r
    )
    assert after["crashy"]["pid"] != before and after["crashy"]["status"] in ("running", "idle")
    # the process died at once: its last line reached the worker's log file, not the bus
    assert "crashing on request" in (project / ".loom" / "logs" / "risky.log").read_text()

    stopped = loom(project, "stop", "pair")
    assert stopped.returncode == 0, stopped.stderr
    assert "same worker 'risky'" in stopped.stdout
    assert wait_for(lambda: status(project)["pair"]["status"] == "stopped")
    assert loom(project, "start", "pair").returncode == 0
    assert wait_for(lambda: status(project)["pair"]["status"] in ("running", "idle"))
    restarted = loom(project, "restart", "echo")
    assert restarted.returncode == 0, restarted.stderr
    assert wait_for(
        lambda: (r := status(project)["echo"])["pid"] and r["pid"] != rows["echo"]["pid"]
    )

    unknown = loom(project, "stop", "nobody")
    assert unknown.returncode == 1
    assert "no agent 'nobody' under `loom run`" in unknown.stderr
    assert "crashy" in unknown.stderr

    # Ctrl-C stops the supervisor and every worker
    workers = {row["pid"] for row in status(project).values() if row.get("worker")}
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0
    assert "stopped" in proc.stdout.read()
    assert wait_for(lambda: not any(alive(pid) for pid in workers), timeout=15)


class Output:
    """A child process's stdout, read line by line on a thread (so waits can be bounded)."""

    def __init__(self, proc: subprocess.Popen[str]):
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        for line in proc.stdout or ():
            self.lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)


def test_logs_follow_prints_new_lines(supervised) -> None:
    project, _ = supervised
    env = {**python_env(), "COLUMNS": "160"}
    follower = subprocess.Popen(
        [PYTHON, "-m", "loom_kernel.cli.app", "logs", "echo", "-f"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    output = Output(follower)
    try:
        # the follower subscribes after it starts: publish until a new line reaches it
        n = 0

        def followed() -> bool:
            nonlocal n
            n += 1
            loom(project, "emit", "echo.x", json.dumps({"n": n}))
            return output.has(f"echoing {{'n': {n}}}")

        wait_for(followed, timeout=60, every=0.5)
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=20)


def test_subscribe_prints_events_as_json(supervised) -> None:
    project, _ = supervised
    listener = subprocess.Popen(
        [PYTHON, "-m", "loom_kernel.cli.app", "subscribe", "echo.*", "--json", "--count", "1"],
        cwd=project, env=python_env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    output = Output(listener)

    def heard() -> bool:  # publish until the listener, once subscribed, got one and quit
        loom(project, "emit", "echo.y", '{"k": "v"}')
        return listener.poll() is not None

    wait_for(heard, timeout=60, every=0.5)
    output.thread.join(timeout=10)
    assert listener.returncode == 0
    assert json.loads(output.lines[0])["data"] == {"k": "v"}


def test_a_bad_agent_module_stops_its_group_with_the_error_instead_of_restarting(
    tmp_path: Path,
) -> None:
    project = make_project(
        tmp_path / "proj", TOML + '\n[agents.broken]\nmodule = "agents.nope:Nope"\n'
    )
    env = {**python_env()}
    proc = subprocess.Popen(
        [PYTHON, "-m", "loom_kernel.cli.app", "run", "--only", "broken,echo"],
        cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        row = wait_for(
            lambda: (r := status(project).get("broken")) and r["status"] == "failed" and r, 60
        )
        assert "module 'agents.nope' cannot be imported" in row["last_error"]
        assert row["restarts"] == 0
        # a configuration error is not retried: a later status still shows no restart
        assert status(project)["broken"]["restarts"] == 0
        assert status(project)["echo"]["status"] in ("running", "idle")
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert "cannot start" in out and "not restarted" in out


def test_a_misspelt_agent_class_suggests_the_right_one(tmp_path: Path) -> None:
    project = make_project(
        tmp_path / "typo", TOML + '\n[agents.typo]\nmodule = "agents.echo:Ecko"\n'
    )
    done = subprocess.run(
        [PYTHON, "-m", "loom_kernel.ops.worker", "--config", str(project / "loom.toml"),
         "--agents", "typo"],
        cwd=project, env=python_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2  # the supervisor's "configuration error, do not restart"
    assert "'Ecko' is not defined in agents.echo (did you mean 'Echo'?)" in done.stderr


def test_commands_without_a_project_or_a_bus_say_what_to_do(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = loom(empty, "run")
    assert done.returncode == 1 and "no loom.toml here or above" in done.stderr
    project = make_project(tmp_path / "idle")
    for args in (["status"], ["stop", "echo"], ["emit", "a.b"], ["request", "a.b"], ["logs"]):
        done = loom(project, *args)
        assert done.returncode == 1, args
        assert "no bus runs for this project" in done.stderr, args
    bad_json = loom(project, "emit", "a.b", "{nope")
    assert bad_json.returncode == 1 and "DATA is not JSON" in bad_json.stderr
    former = loom(project, "publish", "a.b", "--request")  # the old name, for one release
    said = " ".join(former.stderr.split())
    assert (
        "`loom publish` is now `loom emit`, and `loom publish --request` is `loom request`" in said
    )
    assert former.returncode == 1 and "no bus runs for this project" in said


def test_a_bad_bus_url_is_one_clear_error_not_a_traceback(tmp_path: Path) -> None:
    # regression: `loom status` printed a 67-line ZMQError traceback, `loom publish` said
    # "no bus runs for this project"
    project = make_project(tmp_path / "badurl", '[bus]\nurl = "tcp://not a host:7355"\n')
    for args in (["status"], ["emit", "a.b"], ["run"]):
        done = loom(project, *args)
        assert done.returncode == 1, args
        assert "Traceback" not in done.stderr, args
        assert "[bus] url: bad bus url 'tcp://not a host:7355'" in done.stderr, args
        assert "no bus runs" not in done.stderr, args


def test_no_agents_declared_is_a_clear_error(tmp_path: Path) -> None:
    project = make_project(tmp_path / "bare", "[runtime]\nheartbeat_interval = 0.3\n")
    done = loom(project, "run")
    assert done.returncode == 1
    assert "no agents to run" in done.stderr
    assert not os.path.exists(project / ".loom" / "bus.json")
