"""Canvas edits change the user's code surgically: only the lines they mean to change."""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest

from loom_studio.builder import (
    EditError,
    add_subscription,
    edit_file,
    read_project,
    read_source,
    rename_topic,
    set_qos,
)
from tests.conftest import REPO

PLANNER = REPO / "demo" / "market_analyst" / "planner.py"


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0))
    added = [line[1:] for line in diff if line.startswith("+") and not line.startswith("+++")]
    removed = [line[1:] for line in diff if line.startswith("-") and not line.startswith("---")]
    return added, removed


def test_a_subscription_added_to_the_demo_planner_only_adds_lines(tmp_path: Path) -> None:
    project = tmp_path / "market_analyst"
    shutil.copytree(PLANNER.parent, project, ignore=shutil.ignore_patterns("__pycache__"))
    before = (project / "planner.py").read_text()
    assert edit_file(
        project / "planner.py", add_subscription, "PlannerAgent", "news.alert.*", "on_alert",
        qos="realtime",
    )  # fmt: skip
    after = (project / "planner.py").read_text()
    added, removed = changed_lines(before, after)
    assert removed == []  # git diff: only added lines
    assert sorted(added) == sorted([
        "from loom_kernel import Envelope",  # the one name the planner did not import
        "",
        '    @on_event("news.alert.*", qos="realtime")',
        "    async def on_alert(self, event: Envelope, ctx: Context) -> None:",
        '        """Handle ``news.alert.*``."""',
    ])  # fmt: skip
    planner = next(a for a in read_project(project).agents if a.id == "planner")
    assert ("news.alert.*", "on_alert", "realtime") in {
        (s.pattern, s.method, s.qos) for s in planner.subscriptions
    }
    compile(after, "planner.py", "exec")


def test_missing_imports_come_as_one_added_line() -> None:
    source = (
        "# my agent\n"
        "from loom_kernel import Agent  # the base\n\n\n"
        "class Mine(Agent):\n"
        "    id = 'mine'  # keep\n"
    )
    after = add_subscription(source, "Mine", "a.b", "on_ab")
    added, removed = changed_lines(source, after)
    assert removed == []
    assert "from loom_kernel import Context, Envelope, on_event" in added
    [agent] = read_source(after)
    assert [s.pattern for s in agent.subscriptions] == ["a.b"]


def test_rename_a_topic_in_patterns_and_sends_and_nowhere_else() -> None:
    source = """
from loom_kernel import Agent, on_event


class Planner(Agent):
    # plans go to "plan.*" (this comment stays)
    @on_event('plan.*', qos="realtime")   # odd spacing stays
    async def on_plan(self, event, ctx):
        await ctx.emit(f"plan.{event.data['symbol']}", event.data)
        log("plan.*")  # not a send: untouched

    async def other(self, event, ctx):
        await ctx.emit("plan.fixed", 1)
"""
    after = rename_topic(source, "plan.*", "orders.plan.*")
    added, removed = changed_lines(source, after)
    assert added == [
        "    @on_event('orders.plan.*', qos=\"realtime\")   # odd spacing stays",
        "        await ctx.emit(f\"orders.plan.{event.data['symbol']}\", event.data)",
    ]
    assert len(removed) == 2
    assert rename_topic(after, "plan.fixed", "plan.still") != after
    assert rename_topic(source, "no.such", "other.topic") == source  # nothing to rename


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: add_subscription(s, "Nope", "a.b", "m"), "no class 'Nope'.*classes: Mine"),
        (lambda s: add_subscription(s, "Mine", "a.b", "run"), "has a method 'run' already"),
        (lambda s: add_subscription(s, "Mine", "a..b", "m"), "pattern 'a..b'"),
        (lambda s: add_subscription(s, "Mine", "a.b", "not ok"), "is not a method name"),
        (lambda s: rename_topic(s, "a.b", "a b"), "topic 'a b'"),
    ],
)
def test_an_edit_that_cannot_be_made_says_why(call, message: str) -> None:
    source = (
        "from loom_kernel import Agent\n\nclass Mine(Agent):\n"
        "    async def run(self, ctx):\n        pass\n"
    )
    with pytest.raises(EditError, match=message):
        call(source)


def test_a_handlers_qos_changes_in_its_decorator_only() -> None:
    source = PLANNER.read_text()
    realtime = set_qos(source, "PlannerAgent", "on_order", "realtime")
    added, removed = changed_lines(source, realtime)
    assert (added, removed) == (
        ['    @on_event("trade.order.*", qos="realtime")'],
        ['    @on_event("trade.order.*")'],
    )
    assert set_qos(realtime, "PlannerAgent", "on_order", "reliable") == source  # the default
    with pytest.raises(EditError, match="use reliable, realtime or batched"):
        set_qos(source, "PlannerAgent", "on_order", "fast")
    with pytest.raises(EditError, match="has no single @on_event"):
        set_qos(source, "PlannerAgent", "_plan_symbol", "realtime")
