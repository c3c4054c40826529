"""The Market Analyst's traces as Arize Phoenix shows them: a real ``phoenix serve``.

Phoenix is heavy (its own server, database and UI), so it lives in its own virtual
environment, ``.venv-phoenix`` (``make phoenix``; ``make test`` builds it), started once for
this module on free ports with its own working folder. The demo exports to it over
OTLP/HTTP with ``[tracing] project``; the test reads the spans back through Phoenix's
REST API (``GET /v1/projects/<project>/spans``), as a user's notebook or script would.
Without ``.venv-phoenix`` the module is skipped, unless ``LOOM_REQUIRE_PHOENIX`` is set
(``make test`` sets it): then it fails and says how to install it.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, free_port
from tests.demo.market_analyst.test_e2e import BUY, collect, demo_config, run_demo
from tests.support.openai_server import OpenAIServer, Reply

PHOENIX = REPO / ".venv-phoenix" / "bin" / "phoenix"
PROJECT_NAME = "loom-phoenix-test"
AGENTS = ("trend", "risk", "sentiment", "executor")
pytestmark = [pytest.mark.multiprocess, pytest.mark.phoenix, pytest.mark.timeout(240)]

if not PHOENIX.exists():
    message = f"no Phoenix at {PHOENIX}: run `make phoenix` (its own venv, ~3 min)"
    if os.environ.get("LOOM_REQUIRE_PHOENIX"):
        raise RuntimeError(message)
    pytest.skip(message, allow_module_level=True)


class Phoenix:
    """``phoenix serve`` on free ports of 127.0.0.1, in a folder of its own."""

    def __init__(self, folder: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / "phoenix.log"
        env = {
            **os.environ,
            "PHOENIX_WORKING_DIR": str(folder),
            "PHOENIX_PORT": str(self.port),
            "PHOENIX_GRPC_PORT": str(free_port()),
            "PHOENIX_HOST": "127.0.0.1",
            "PHOENIX_TELEMETRY_ENABLED": "false",
        }
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [str(PHOENIX), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
            )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"phoenix serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"phoenix not ready in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Every span of the project, page by page (Phoenix takes at most 1,000 a page)."""
        spans: list[dict[str, Any]] = []
        cursor = ""
        while True:
            url = f"{self.url}/v1/projects/{project}/spans?limit=1000{cursor}"
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    page = json.load(response)
            except urllib.error.HTTPError as exc:
                if exc.code == 404:  # no span of the project arrived yet
                    return []
                raise AssertionError(f"{url}: {exc.code} {exc.read()[:500]!r}") from None
            spans += page["data"]
            if not page.get("next_cursor"):
                return spans
            cursor = f"&cursor={page['next_cursor']}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    running = Phoenix(tmp_path_factory.mktemp("phoenix"))
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def attribute(span: dict[str, Any], name: str) -> Any:
    """A span attribute as Phoenix returns it: flat (``a.b``) or nested (``{a: {b}}``)."""
    attributes = span.get("attributes") or {}
    if name in attributes:
        return attributes[name]
    value: Any = attributes
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


async def test_phoenix_tells_the_agents_apart_and_classifies_every_span(
    phoenix: Phoenix, project: Path
) -> None:
    with OpenAIServer(default=Reply(content=json.dumps(BUY))) as llm:
        raw = demo_config(project, llm)
        raw["tracing"] = {
            "otlp_endpoint": phoenix.url,
            "project": PROJECT_NAME,
            "service_name": "market-analyst",
            "capture_content": True,
        }
        rt = await run_demo(project, raw)
        try:
            orders = await rt.subscribe("trade.order.*")
            filled = [o for o in await collect(orders, 6) if o.data["status"] == "filled"]
            assert filled, "no order filled"
        finally:
            await rt.aclose()  # flushes the OTLP queue

    deadline, spans = time.monotonic() + 60, []
    while time.monotonic() < deadline:
        spans = phoenix.spans(PROJECT_NAME)
        names = {span["name"] for span in spans}
        if {f"{agent}: process market.price.AAPL" for agent in AGENTS} <= names and any(
            span["span_kind"] == "LLM" for span in spans
        ):
            break
        await asyncio.sleep(1)
    names = {span["name"] for span in spans}
    # the four handlers of one tick: four names, one per agent, each an AGENT span
    siblings = [span for span in spans if span["name"].endswith(": process market.price.AAPL")]
    assert {span["name"].split(":")[0] for span in siblings} >= set(AGENTS), sorted(names)
    for span in siblings:
        assert span["span_kind"] == "AGENT", span
        agent = span["name"].split(":")[0]
        assert attribute(span, "gen_ai.agent.name") == agent
    # no span of kind "unknown": every one is classified
    kinds = {span["span_kind"] for span in spans}
    assert kinds <= {"AGENT", "CHAIN", "TOOL", "LLM"}, kinds
    assert {"AGENT", "CHAIN", "TOOL", "LLM"} <= kinds
    # the tool call is named the GenAI way
    assert "execute_tool web-search" in names, sorted(names)
    # an LLM span shows the prompt and the answer, not only its model
    llm_span = next(span for span in spans if span["span_kind"] == "LLM")
    prompt = json.loads(attribute(llm_span, "input.value"))
    assert prompt[-1]["role"] == "user" and '"symbol"' in prompt[-1]["parts"][0]["content"]
    assert "BUY" in str(attribute(llm_span, "output.value"))
    assert attribute(llm_span, "llm.model_name")
    # one workflow is one trace in Phoenix too: a tick's four handlers share its trace
    by_trace: dict[str, set[str]] = {}
    for span in siblings:
        by_trace.setdefault(span["context"]["trace_id"], set()).add(span["name"].split(":")[0])
    assert any(agents >= set(AGENTS) for agents in by_trace.values()), by_trace
