"""`loom traces` and `loom trace` as real processes, reading the store a runtime fills."""

from __future__ import annotations

import asyncio
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from loom_kernel import Runtime
from tests.conftest import PYTHON, python_env
from tests.kernel.tracing.test_store import run_jobs

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(60)]

SUMMARY_KEYS = {"trace_id", "root", "spans", "agents", "start_ns", "duration_ms", "errors"}


async def loom(project: Path, *args: str, columns: int = 200) -> subprocess.CompletedProcess[str]:
    """Run ``loom ARGS`` in the project folder (off the loop: the runtime keeps running)."""
    env = python_env()
    env["COLUMNS"] = str(columns)  # rich's width when the output is not a terminal
    return await asyncio.to_thread(
        subprocess.run,
        [PYTHON, "-m", "loom_kernel.cli.app", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def one_line(text: str) -> str:
    return " ".join(text.split())


@dataclass
class Work:
    project: Path
    ok: str  # the trace id of a job that went well
    failed: str  # the trace id of a job whose last handler raised


@pytest.fixture
async def work(rt: Runtime, project: Path) -> Work:
    """Two jobs done by a runtime of the test; its embedded bus stored their spans."""
    ok, failed = await run_jobs(rt, 3, -2, flush=True)
    assert (project / ".loom" / "traces.db").is_file()
    return Work(project, ok, failed)


async def test_traces_json_lists_each_trace_newest_first(work: Work) -> None:
    done = await loom(work.project, "traces", "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert [summary["trace_id"] for summary in found] == [work.failed, work.ok]
    for summary in found:
        assert set(summary) == SUMMARY_KEYS
        assert summary["root"] == "publish job.start"
        assert summary["spans"] >= 8
        assert {"calc", "planner", "checker"} <= set(summary["agents"])
        assert isinstance(summary["start_ns"], int)
        assert summary["duration_ms"] > 0
    assert [summary["errors"] for summary in found] == [1, 0]
    assert found[0]["start_ns"] > found[1]["start_ns"]


async def test_traces_limit_and_agent_options(work: Work) -> None:
    newest = json.loads((await loom(work.project, "traces", "-n", "1", "--json")).stdout)
    assert [summary["trace_id"] for summary in newest] == [work.failed]
    nobody = json.loads((await loom(work.project, "traces", "--agent", "nobody", "--json")).stdout)
    assert nobody == []
    recent = json.loads((await loom(work.project, "traces", "--minutes", "5", "--json")).stdout)
    assert len(recent) == 2


async def test_traces_errors_lists_only_traces_with_an_error(work: Work) -> None:
    done = await loom(work.project, "traces", "--errors", "--json")
    assert done.returncode == 0, done.stderr
    (summary,) = json.loads(done.stdout)
    assert summary["trace_id"] == work.failed
    assert summary["errors"] == 1


async def test_traces_prints_a_table_with_the_root_span(work: Work) -> None:
    done = await loom(work.project, "traces")
    assert done.returncode == 0, done.stderr
    assert "2 recent traces" in done.stdout
    assert str(work.project / ".loom" / "traces.db") in one_line(done.stdout)
    for trace_id in (work.ok, work.failed):
        assert trace_id[:12] in done.stdout  # a prefix `loom trace` accepts
    assert done.stdout.count("publish job.start") == 2


async def test_trace_accepts_a_unique_prefix(work: Work) -> None:
    done = await loom(work.project, "trace", work.ok[:12], "--json")
    assert done.returncode == 0, done.stderr
    assert {span["trace_id"] for span in json.loads(done.stdout)} == {work.ok}


async def test_traces_table_shows_the_root_name_in_80_columns(work: Work) -> None:
    done = await loom(work.project, "traces", columns=80)
    assert done.returncode == 0, done.stderr
    assert "publish job.start" in done.stdout


async def test_traces_table_keeps_one_line_per_trace_in_80_columns(work: Work) -> None:
    listed = json.loads((await loom(work.project, "traces", "--json")).stdout)
    done = await loom(work.project, "traces", columns=80)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    for summary in listed:  # regression: the agents column folded to one letter a line
        rows = [line for line in lines if line.startswith(summary["trace_id"][:12])]
        assert len(rows) == 1, lines
        assert summary["agents"][0][:5] in rows[0]


async def test_traces_select_by_span_name_and_size(work: Work) -> None:
    everything = json.loads((await loom(work.project, "traces", "--json")).stdout)
    biggest = max(summary["spans"] for summary in everything)
    done = await loom(work.project, "traces", "--json", "--min-spans", str(biggest))
    assert done.returncode == 0, done.stderr
    assert all(summary["spans"] >= biggest for summary in json.loads(done.stdout))
    named = json.loads((await loom(work.project, "traces", "--json", "--name", "job.start")).stdout)
    assert {summary["trace_id"] for summary in named} == {work.ok, work.failed}
    none = await loom(work.project, "traces", "--json", "--name", "no.such.span")
    assert json.loads(none.stdout) == []


async def test_trace_last_takes_the_filters(work: Work) -> None:
    done = await loom(work.project, "trace", "--last", "--agent", "nobody")
    assert done.returncode == 1
    assert "no trace stored in" in done.stderr and "with agent nobody" in done.stderr
    spans = json.loads((await loom(work.project, "trace", "--last", "--min-spans", "2",
                                   "--json")).stdout)  # fmt: skip
    assert len(spans) >= 2


async def test_trace_last_json_gives_the_spans_as_a_tree(work: Work) -> None:
    done = await loom(work.project, "trace", "--last", "--json")
    assert done.returncode == 0, done.stderr
    spans = json.loads(done.stdout)
    assert {span["trace_id"] for span in spans} == {work.failed}
    roots = [span for span in spans if span["parent_id"] is None]
    assert [root["name"] for root in roots] == ["publish job.start"]
    by_id = {span["span_id"]: span for span in spans}
    for span in spans:  # every other span hangs under the root
        seen = set()
        while span["parent_id"] is not None:
            assert span["span_id"] not in seen, "a cycle in the parent ids"
            seen.add(span["span_id"])
            span = by_id[span["parent_id"]]
        assert span is roots[0]
    handled = next(span for span in spans if span["name"] == "handle job.done")
    assert handled["status"] == "error"
    assert handled["status_message"] == "ValueError: negative job -2"
    assert handled["events"][0]["name"] == "exception"
    assert by_id[handled["parent_id"]]["name"] == "publish job.done"
    assert [span["start_ns"] for span in spans] == sorted(span["start_ns"] for span in spans)


async def test_trace_by_id_prints_a_tree_with_timings(work: Work) -> None:
    done = await loom(work.project, "trace", work.ok)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"trace {work.ok}" in out
    for name in ("publish job.start", "handle job.start", "request calc.square", "handle job.done"):
        assert name in out
    assert " ms" in out
    assert "error" not in out
    assert "└──" in out  # drawn as a tree
    lines = out.splitlines()
    indent = {
        name: next(len(line) - len(line.lstrip(" │├└─")) for line in lines if f"{name}  " in line)
        for name in ("publish job.start", "handle job.start", "request calc.square")
    }
    assert indent["publish job.start"] < indent["handle job.start"] < indent["request calc.square"]


async def test_trace_of_a_failed_job_shows_the_error(work: Work) -> None:
    done = await loom(work.project, "trace", work.failed, "--no-attributes")
    assert done.returncode == 0, done.stderr
    assert "1 error(s)" in done.stdout
    assert "ValueError: negative job -2" in done.stdout
    assert "messaging.destination.name" not in done.stdout


async def test_trace_without_id_or_last_fails_saying_what_to_pass(work: Work) -> None:
    done = await loom(work.project, "trace")
    assert done.returncode == 1
    assert "name a trace id (see `loom traces`) or pass --last" in one_line(done.stderr)
    assert done.stdout == ""


async def test_trace_of_an_unknown_id_fails_clearly(work: Work) -> None:
    unknown = "f" * 32
    done = await loom(work.project, "trace", unknown)
    assert done.returncode == 1
    message = one_line(done.stderr)
    assert f"no trace '{unknown}'" in message
    assert "`loom traces` lists what is stored" in message


async def test_traces_without_a_store_fails_saying_so(tmp_path: Path) -> None:
    project = tmp_path / "empty"
    project.mkdir()
    (project / "loom.toml").write_text("[runtime]\nheartbeat_interval = 0.2\n")
    for command in (["traces"], ["traces", "--json"], ["trace", "--last"]):
        done = await loom(project, *command)
        assert done.returncode == 1, command
        message = one_line(done.stderr)
        assert "no span store at" in message
        assert str(project / ".loom" / "traces.db") in message
        assert done.stdout == ""
