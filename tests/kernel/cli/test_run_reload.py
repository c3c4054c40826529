"""`loom run --reload`: an edited agent module is swapped into its running worker."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, python_env
from tests.kernel.cli.test_run_command import loom, status, wait_for

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(180)]

GREETER = """
from loom_kernel import Agent, on_event

class Greeter(Agent):
    @on_event("greet.*")
    async def greet(self, event, ctx):
        self.state["served"] = self.state.get("served", 0) + 1
        await ctx.reply(event, {{"text": "{greeting}", "served": self.state["served"]}})
"""
TOML = """
[runtime]
heartbeat_interval = 0.3

[agents.greeter]
module = "agents.greeter:Greeter"
"""


def ask(project: Path) -> dict:
    done = loom(project, "publish", "--request", "greet.me", "{}")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_an_edited_agent_is_reloaded_in_its_worker(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "agents").mkdir(parents=True)
    (project / "agents" / "__init__.py").write_text("")
    source = project / "agents" / "greeter.py"
    source.write_text(GREETER.format(greeting="hello"))
    (project / "loom.toml").write_text(TOML)
    run = subprocess.Popen(
        [PYTHON, "-m", "loom_kernel.cli.app", "run", "--reload"],
        cwd=project, env=python_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        pid = wait_for(lambda: (status(project).get("greeter") or {}).get("pid"), 60)
        assert ask(project) == {"text": "hello", "served": 1}
        source.write_text(GREETER.format(greeting="bonjour"))
        wait_for(lambda: ask(project)["text"] == "bonjour", 30)
        answer = ask(project)
        assert answer["served"] > 2  # the count survived the reload: the state was kept
        assert status(project)["greeter"]["pid"] == pid  # the same worker process
        # a broken edit: the running code goes on, the log says where
        source.write_text(GREETER.format(greeting="hola").replace("async def", "async def def"))
        log = project / ".loom" / "logs" / "greeter.log"
        wait_for(lambda: "not reloaded" in log.read_text(), 30)
        assert "greeter.py:6: syntax error" in log.read_text()
        assert ask(project)["text"] == "bonjour"
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(timeout=30)
