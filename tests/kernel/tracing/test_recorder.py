"""One trace per workflow: spans, parents and links across agents and processes."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from loom_kernel import Agent, Runtime, on_event, open_runtime, tool
from loom_kernel.config import parse_config
from loom_kernel.protocol.spans import Span, format_traceparent, parse_traceparent, valid_ids
from loom_kernel.tracing import NO_TRACER, SpanRecorder
from tests.conftest import wait_until
from tests.kernel.conftest import next_event

pytestmark = pytest.mark.timeout(60)


def by_name(spans: list[Span]) -> dict[str, Span]:
    return {span.name: span for span in spans}


async def stored_trace(rt: Runtime, root_topic: str, spans: int) -> list[Span]:
    """The stored trace whose root publishes ``root_topic``, once it has ``spans`` spans."""
    store = rt.span_store
    found: list[Span] = []

    def complete() -> bool:
        nonlocal found
        for summary in store.traces(limit=50):
            if summary.root == f"publish {root_topic}":
                found = store.trace(summary.trace_id)
                return len(found) >= spans
        return False

    await wait_until(complete, timeout=10)
    return found


class Asker(Agent):
    @on_event("flow.start")
    async def start(self, event, ctx):
        answer = await ctx.request("flow.ask", event.data)
        total = await ctx.tool("flow.add", {"a": answer.data, "b": 1})
        await ctx.emit("flow.done", total)


class Answerer(Agent):
    @on_event("flow.ask")
    async def ask(self, event, ctx):
        await ctx.reply(event, event.data * 10)

    @tool("flow.add")
    async def add(self, a: int, b: int) -> int:
        return a + b


class Sink(Agent):
    @on_event("flow.done")
    async def done(self, event, ctx):
        if event.data > 100:
            raise ValueError("too much")
        await ctx.emit("flow.sunk", event.data)


async def test_a_workflow_is_one_trace_with_the_right_tree(rt: Runtime) -> None:
    await rt.start(Asker("asker"), Answerer("answerer"), Sink("sink"))
    sunk = await rt.subscribe("flow.sunk")
    await rt.emit("flow.start", 4)
    assert (await sunk.get(timeout=5)).data == 41
    spans = by_name(await stored_trace(rt, "flow.start", 14))
    assert len({s.trace_id for s in spans.values()}) == 1

    def parent(name: str) -> str:
        return next(s.name for s in spans.values() if s.span_id == spans[name].parent_id)

    assert spans["publish flow.start"].parent_id is None
    assert parent("handle flow.start") == "publish flow.start"
    assert parent("request flow.ask") == "handle flow.start"
    assert parent("publish flow.ask") == "request flow.ask"
    assert parent("handle flow.ask") == "publish flow.ask"
    assert parent("reply flow.ask") == "handle flow.ask"
    assert parent("tool flow.add") == "handle flow.start"
    assert parent("request loom.tool.flow.add") == "tool flow.add"
    assert parent("serve flow.add") == "publish loom.tool.flow.add"
    assert parent("publish flow.done") == "handle flow.start"
    assert parent("handle flow.done") == "publish flow.done"
    assert parent("publish flow.sunk") == "handle flow.done"
    assert spans["handle flow.ask"].kind == "server"
    assert spans["handle flow.start"].kind == "consumer"
    assert spans["publish flow.start"].kind == "producer"
    assert spans["tool flow.add"].attributes["loom.tool.kind"] == "agent"
    assert {s.agent for s in spans.values()} >= {"asker", "answerer", "sink"}
    assert all(s.end_ns >= s.start_ns > 0 for s in spans.values())


async def test_a_handler_error_marks_its_span_and_the_trace(rt: Runtime) -> None:
    await rt.start(Asker("asker"), Answerer("answerer"), Sink("sink"))
    errors = await rt.subscribe("loom.agent.sink.error")
    await rt.emit("flow.start", 20)  # 201 > 100: the sink raises
    await errors.get(timeout=5)
    spans = by_name(await stored_trace(rt, "flow.start", 13))
    failed = spans["handle flow.done"]
    assert failed.status == "error"
    assert failed.status_message == "ValueError: too much"
    assert failed.events[0].name == "exception"
    assert failed.events[0].attributes["exception.type"] == "ValueError"
    summary = next(s for s in rt.span_store.traces() if s.trace_id == failed.trace_id)
    assert summary.errors == 1


class Gatherer(Agent):
    @on_event("gather.go")
    async def go(self, event, ctx):
        result = await ctx.fan_in(["gather.a", "gather.b"], timeout=5)
        await ctx.emit("gather.done", sorted(e.data for e in result.events))


async def test_fan_in_links_every_input(rt: Runtime) -> None:
    await rt.start(Gatherer("gatherer"))
    done = await rt.subscribe("gather.done")
    await rt.emit("gather.go")
    a = b = None
    for _ in range(50):  # re-emit until the fan-in (subscribing inside the handler) hears both
        a = await rt.emit("gather.a", 1)
        b = await rt.emit("gather.b", 2)
        try:
            result = await done.get(timeout=0.2)
            break
        except TimeoutError:
            continue
    assert result.data == [1, 2]
    spans = await stored_trace(rt, "gather.go", 4)
    fan_in = next(s for s in spans if s.name == "fan_in")
    linked = {span_id for _, span_id in fan_in.links}
    inputs = {parse_traceparent(e.traceparent)[1] for e in (a, b)}
    assert linked & inputs, (fan_in.links, inputs)
    assert fan_in.attributes["loom.gathered"] == 2
    handler = next(s for s in spans if s.name == "handle gather.go")
    assert fan_in.parent_id == handler.span_id


async def test_three_agents_in_two_processes_share_one_trace(rt: Runtime, spawn) -> None:
    class Collector(Agent):
        @on_event("pipe.exclaimed")
        async def collect(self, event, ctx):
            await ctx.emit("pipe.collected", event.data)

    await rt.start(Collector("parent-collector"))
    child = await spawn("upper", "exclaim")
    collected = await rt.subscribe("pipe.collected")
    await rt.emit("pipe.raw", "hi")
    assert (await next_event(collected, child=child)).data == "HI!"
    spans = by_name(await stored_trace(rt, "pipe.raw", 7))
    chain = [
        "publish pipe.raw",
        "handle pipe.raw",
        "publish pipe.upper",
        "handle pipe.upper",
        "publish pipe.exclaimed",
        "handle pipe.exclaimed",
        "publish pipe.collected",
    ]
    for parent, span in itertools.pairwise(chain):
        assert spans[span].parent_id == spans[parent].span_id, span
    assert spans["handle pipe.raw"].agent == "child-upper"
    assert spans["handle pipe.upper"].agent == "child-exclaim"
    assert spans["handle pipe.exclaimed"].agent == "parent-collector"
    services = {s.service for s in spans.values()}
    assert len(services) == 2  # the test process and the child, each its own service name


async def test_traceparent_rides_in_the_envelope(rt: Runtime) -> None:
    sub = await rt.subscribe("plain.topic")
    sent = await rt.emit("plain.topic", 1)
    received = await sub.get(timeout=5)
    assert received.traceparent == sent.traceparent
    trace_id, span_id, sampled = parse_traceparent(received.traceparent)
    assert sampled and len(trace_id) == 32 and len(span_id) == 16


def test_traceparent_parsing_rejects_malformed_values() -> None:
    good = format_traceparent("a" * 32, "b" * 16, True)
    assert parse_traceparent(good) == ("a" * 32, "b" * 16, True)
    assert parse_traceparent(good[:-2] + "03") == ("a" * 32, "b" * 16, True)  # a bit field
    assert parse_traceparent(good[:-2] + "00")[2] is False
    zero_trace = "00-" + "0" * 32 + "-" + "b" * 16 + "-01"
    for bad in (None, "", "00-xyz", zero_trace, good.replace("-", "_")):
        assert parse_traceparent(bad) is None
    # ids are checked as hex when spans leave Loom, not per event
    assert valid_ids("a" * 32, "b" * 16)
    assert not valid_ids("g" * 32)


async def test_runtime_reports_are_not_traced(project: Path) -> None:
    config = parse_config({"runtime": {"heartbeat_interval": 0.05}}, path=project / "loom.toml")
    async with open_runtime(config) as rt:
        beats = await rt.subscribe("loom.client.*")
        beat = await beats.get(timeout=5)
        assert beat.traceparent is None


async def test_tracing_off_adds_nothing(project: Path) -> None:
    config = parse_config({"tracing": {"enabled": False}}, path=project / "loom.toml")
    async with open_runtime(config) as rt:
        assert rt.tracing is NO_TRACER and rt.middleware == []
        sub = await rt.subscribe("plain.topic")
        await rt.emit("plain.topic", 1)
        assert (await sub.get(timeout=5)).traceparent is None
        with rt.tracing.span("x") as span:
            assert span is None
    assert not (project / ".loom" / "traces.db").exists()


async def test_statistics_count_recorded_and_exported(rt: Runtime) -> None:
    await rt.emit("count.me", 1)
    await wait_until(lambda: rt.tracing.statistics().exported >= 1)
    stats = rt.tracing.statistics()
    assert stats.enabled and stats.sample_ratio == 1.0 and stats.dropped == 0
    assert isinstance(rt.tracing, SpanRecorder)


async def test_an_observer_agent_adds_no_spans(rt: Runtime) -> None:
    class Watcher(Agent):
        traced = False

        @on_event("watched.*")
        async def watch(self, event, ctx):
            await ctx.emit("watched-done.x", event.data)  # its emits still carry the context

    await rt.start(Watcher("watcher"))
    done = await rt.subscribe("watched-done.*")
    sent = await rt.emit("watched.x", 1)
    got = await done.get(timeout=5)
    assert parse_traceparent(got.traceparent)[0] == parse_traceparent(sent.traceparent)[0]
    spans = await stored_trace(rt, "watched.x", 2)
    assert "handle watched.x" not in {s.name for s in spans}
