"""Tracing as middleware, over a fake transport: one trace from publish to handler."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from loom_kernel import Agent, on_event
from loom_kernel.agents import AgentRunner
from loom_kernel.config import TracingConfig
from loom_kernel.protocol import Span
from loom_kernel.tracing import SpanRecorder, tracing_middleware
from tests.conftest import wait_until
from tests.support.fake_transport import Hub
from tests.support.seams import make_context

pytestmark = pytest.mark.timeout(10)


class Relay(Agent):
    @on_event("in.*")
    async def relay(self, event, ctx) -> None:
        await ctx.emit("out.done", event.data)


class Watcher(Agent):
    traced = False

    @on_event("out.*")
    async def watch(self, event, ctx) -> None:
        await ctx.emit("watched.x", event.data)


@pytest.fixture
async def recorder() -> SpanRecorder:
    recorder = SpanRecorder(TracingConfig())
    exported: list[Span] = []
    await recorder.start(exported.extend)
    recorder.exported_spans = exported  # type: ignore[attr-defined]
    yield recorder
    await recorder.aclose()


async def run(hub: Hub, folder: Path, recorder: SpanRecorder, agent: Agent) -> AgentRunner:
    ctx = make_context(hub.transport(), agent.id, folder, tracer=recorder)
    runner = AgentRunner(agent, ctx, middleware=[tracing_middleware(recorder)])
    await runner.start()
    return runner


async def test_publish_and_handle_spans_make_one_trace(
    tmp_path: Path, recorder: SpanRecorder
) -> None:
    hub = Hub()
    relay = await run(hub, tmp_path, recorder, Relay("relay"))
    source = make_context(hub.transport(), "source", tmp_path, tracer=recorder)
    await source.emit("in.x", 1)
    await wait_until(lambda: "out.done" in hub.topics())
    recorder.flush()
    spans = {span.name: span for span in recorder.exported_spans}  # type: ignore[attr-defined]
    root, handle, reply = spans["publish in.x"], spans["handle in.x"], spans["publish out.done"]
    assert root.parent_id is None and root.agent == "source" and root.kind == "producer"
    assert (handle.parent_id, handle.agent, handle.kind) == (root.span_id, "relay", "consumer")
    assert reply.parent_id == handle.span_id
    assert len({root.trace_id, handle.trace_id, reply.trace_id}) == 1
    await relay.stop()


async def test_an_observer_records_no_span_but_carries_the_trace(
    tmp_path: Path, recorder: SpanRecorder
) -> None:
    hub = Hub()
    relay = await run(hub, tmp_path, recorder, Relay("relay"))
    watcher = await run(hub, tmp_path, recorder, Watcher("watcher"))
    await make_context(hub.transport(), "s", tmp_path, tracer=recorder).emit("in.y", 2)
    await wait_until(lambda: "watched.x" in hub.topics())
    recorder.flush()
    spans = recorder.exported_spans  # type: ignore[attr-defined]
    assert not [span for span in spans if span.name == "handle out.done"]
    watched = next(span for span in spans if span.name == "publish watched.x")
    relayed = next(span for span in spans if span.name == "publish out.done")
    assert watched.trace_id == relayed.trace_id and watched.parent_id == relayed.span_id
    await watcher.stop()
    await relay.stop()


async def test_reports_start_no_trace(tmp_path: Path, recorder: SpanRecorder) -> None:
    hub = Hub()
    relay = await run(hub, tmp_path, recorder, Relay("relay"))
    ctx = make_context(hub.transport(), "s", tmp_path, tracer=recorder)
    report = ctx.endpoint.report("loom.agent.s.heartbeat", {"status": "running"})
    assert report.traceparent is None
    recorder.flush()
    assert recorder.exported_spans == []  # type: ignore[attr-defined]
    await relay.stop()


async def test_a_failing_handler_span_is_an_error_kept_in_an_unsampled_trace(
    tmp_path: Path,
) -> None:
    class Failing(Agent):
        @on_event("in.*")
        async def fail(self, event, ctx) -> None:
            raise ValueError("boom")

    recorder = SpanRecorder(TracingConfig(sample_ratio=0.0))
    exported: list[Span] = []
    await recorder.start(exported.extend)
    hub = Hub()
    runner = await run(hub, tmp_path, recorder, Failing("failing"))
    await make_context(hub.transport(), "s", tmp_path, tracer=recorder).emit("in.z", 1)
    await wait_until(lambda: runner.errors == 1)
    await recorder.aclose()
    [span] = exported
    assert (span.name, span.status, span.sampled) == ("handle in.z", "error", False)
    assert span.events[0].attributes["exception.message"] == "boom"
    await runner.stop()


async def test_a_handle_span_holds_nothing_the_garbage_collector_walks(
    tmp_path: Path, recorder: SpanRecorder
) -> None:
    """One span per handled event: its empty events and links must be untracked tuples,
    or a traced agent pays a collection every few hundred events."""
    hub = Hub()
    relay = await run(hub, tmp_path, recorder, Relay("relay"))
    await make_context(hub.transport(), "source", tmp_path, tracer=recorder).emit("in.x", 1)
    await wait_until(lambda: "out.done" in hub.topics())
    recorder.flush()
    handle = next(s for s in recorder.exported_spans if s.name == "handle in.x")  # type: ignore[attr-defined]
    assert (handle.events, handle.links) == ((), ())
    assert not any(gc.is_tracked(x) for x in (handle, handle.events, handle.links))
    handle.add_link("1" * 32, "2" * 16)
    handle.add_event("note", {"k": "v"})
    assert handle.links == (("1" * 32, "2" * 16),) and handle.events[0].name == "note"
    await relay.stop()
