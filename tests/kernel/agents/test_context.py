"""The context over a fake transport: a facade over the endpoint and the capabilities."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from loom_kernel.config import parse_config
from tests.support.fake_transport import Hub
from tests.support.seams import make_context

pytestmark = pytest.mark.timeout(10)


async def test_emit_goes_out_from_the_agent(tmp_path: Path) -> None:
    hub = Hub()
    ctx = make_context(hub.transport(), "trend", tmp_path)
    sent = await ctx.emit("analysis.trend.AAPL", {"up": True}, ttl_ms=500)
    assert (sent.source, sent.ttl_ms, ctx.emitted) == ("trend", 500, 1)
    assert hub.sent[-1] is sent


async def test_settings_and_config_come_from_loom_toml(tmp_path: Path) -> None:
    config = parse_config({"agents": {"trend": {"settings": {"window": 20}}}, "demo": {"x": 1}})
    ctx = make_context(Hub().transport(), "trend", tmp_path, config=config)
    assert ctx.settings == {"window": 20}
    assert ctx.config.demo == {"x": 1}


async def test_log_lines_travel_on_the_agents_log_topic(tmp_path: Path) -> None:
    hub = Hub()
    watcher = hub.transport()
    logs = await watcher.subscribe("loom.log.*")
    ctx = make_context(hub.transport(), "planner", tmp_path)
    ctx.log.debug("not published")
    ctx.log.info("bought %d", 3)
    line = await logs.get(timeout=5)
    assert (line.topic, line.data) == ("loom.log.planner", {"level": "INFO", "message": "bought 3"})
    assert line.traceparent is None and ctx.emitted == 0


async def test_memory_is_the_agents_own(tmp_path: Path) -> None:
    ctx = make_context(Hub().transport(), "planner", tmp_path)
    item = await ctx.memory.add("note", "AAPL broke out", key="AAPL")
    assert item.agent == "planner"
    assert [hit.content for hit in await ctx.memory.query("broke")] == ["AAPL broke out"]
    await ctx.memory.store.aclose()


async def test_an_unknown_llm_says_what_to_add(tmp_path: Path) -> None:
    from loom_kernel import LLMError

    ctx = make_context(Hub().transport(), "planner", tmp_path)
    with pytest.raises(LLMError, match=r"no \[llm.deepseek\].*add \[llm.deepseek\]"):
        ctx.llm("deepseek")


async def test_span_is_none_without_a_tracer(tmp_path: Path) -> None:
    ctx = make_context(Hub().transport(), "x", tmp_path)
    with ctx.span("score") as span:
        assert span is None


async def test_ctx_runtime_still_works_with_a_deprecation_warning(tmp_path: Path) -> None:
    ctx = make_context(Hub().transport(), "x", tmp_path)
    with pytest.warns(DeprecationWarning, match="ctx.runtime is deprecated.*ctx.config"):
        assert ctx.runtime is None  # built by hand: no runtime behind it


def test_the_logger_names_the_agent(tmp_path: Path) -> None:
    ctx = make_context(Hub().transport(), "risk", tmp_path)
    assert ctx.log.logger is logging.getLogger("loom.agent.risk")
