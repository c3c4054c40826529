"""OpenTelemetry: OTLP export to a real receiver, the OTel API inside handlers, the
Span <-> ReadableSpan bridge, sampling, and the spans of MCP tool calls and LLM calls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import SpanKind, StatusCode

from loom_kernel import Agent, LLMError, Runtime, ToolError, on_event, open_runtime
from loom_kernel.config import parse_config
from loom_kernel.protocol.spans import Span, SpanEvent, parse_traceparent
from loom_kernel.tracing.otel import from_readable, to_readable
from loom_kernel.tracing.store import SpanStore
from tests.conftest import REPO, WAIT, free_port, wait_until
from tests.support.openai_server import OpenAIServer, Reply
from tests.support.otlp_receiver import OTLPReceiver

pytestmark = pytest.mark.timeout(60)

# Made before any runtime runs, as user code does at import: the API's proxy tracer
# follows the provider Loom installs later.
tracer = trace.get_tracer("user")

MODEL = "openai/loom-test"
TEST_SERVER = {
    "command": "python",
    "args": ["-m", "tests.support.mcp_test_server"],
    "cwd": str(REPO),
    "timeout_sec": 5.0,
}


# -- helpers -------------------------------------------------------------------------


async def open_with(project: Path, **sections: Any) -> Runtime:
    """A runtime on its own embedded bus, configured with ``sections`` of loom.toml."""
    config = parse_config(
        {"runtime": {"heartbeat_interval": 0.2}, **sections}, path=project / "loom.toml"
    )
    return await open_runtime(config)


@pytest.fixture
def store(project: Path) -> Iterator[SpanStore]:
    """The project's span store (``[tracing] store_path`` default), read by the test."""
    spans = SpanStore(project / ".loom" / "traces.db")
    yield spans
    spans.close()


async def stored(store: SpanStore, trace_id: str, *names: str) -> dict[str, Span]:
    """Wait until the spans ``names`` of a trace are in the store; returns them by name."""
    found: dict[str, Span] = {}

    def complete() -> bool:
        found.clear()
        found.update({span.name: span for span in store.trace(trace_id)})
        return set(names) <= set(found)

    try:
        await wait_until(complete)
    except AssertionError:
        raise AssertionError(f"trace {trace_id} has {sorted(found)}, wanted {names}") from None
    return found


class Workflow:
    """Agent ``a`` handles ``w.start``, asks agent ``b`` on ``b.ask``, then emits ``w.done``."""

    class A(Agent):
        @on_event("w.start")
        async def start(self, event, ctx):
            reply = await ctx.request("b.ask", event.data, timeout=WAIT)
            await ctx.emit("w.done", reply.data)

    class B(Agent):
        @on_event("b.ask")
        async def ask(self, event, ctx):
            await ctx.reply(event, event.data * 2)

    SPANS = (
        "publish w.start",
        "handle w.start",
        "request b.ask",
        "publish b.ask",
        "handle b.ask",
        "reply b.ask",
        "publish w.done",
    )
    #: the same spans, as other backends get them: a handler's name says its agent
    EXPORTED = tuple(
        {"handle w.start": "a: process w.start", "handle b.ask": "b: process b.ask"}.get(n, n)
        for n in SPANS
    )

    @staticmethod
    async def run(rt: Runtime) -> str:
        """Start the agents, run the workflow once; returns its trace id."""
        await rt.start(Workflow.A("a"), Workflow.B("b"))
        done = await rt.subscribe("w.done")
        sent = await rt.emit("w.start", 21)
        assert (await done.get(WAIT)).data == 42
        parsed = parse_traceparent(sent.traceparent)
        assert parsed is not None
        return parsed[0]


Job = Callable[[Any], Awaitable[Any]]


class Probe(Agent):
    """Runs ``job(ctx)`` in a handler of ``probe.run``; the outcome goes in ``outcomes``."""

    def __init__(self, job: Job):
        super().__init__("probe")
        self.job = job
        self.outcomes: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()

    @on_event("probe.run")
    async def execute(self, event, ctx):
        try:
            result = await self.job(ctx)
        except Exception as exc:
            self.outcomes.put_nowait((None, exc))
            return
        self.outcomes.put_nowait((result, None))


async def probe(rt: Runtime, job: Job) -> tuple[Any, BaseException | None, str]:
    """Run ``job`` in a handler; returns its result, its exception and the trace id."""
    agent = Probe(job)
    await rt.start(agent)
    try:
        sent = await rt.emit("probe.run")
        result, error = await asyncio.wait_for(agent.outcomes.get(), 15)  # litellm imports
    finally:
        await rt.stop(agent)
    parsed = parse_traceparent(sent.traceparent)
    assert parsed is not None
    return result, error, parsed[0]


def assert_child(child: Span, parent: Span) -> None:
    assert (child.trace_id, child.parent_id) == (parent.trace_id, parent.span_id)


# -- OTLP export ---------------------------------------------------------------------


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as running:
        yield running


async def test_otlp_export_carries_the_workflow_spans_with_their_tree(
    project: Path, receiver: OTLPReceiver
) -> None:
    (project / "loom.toml").write_text(
        f'[runtime]\nheartbeat_interval = 0.2\n\n[tracing]\notlp_endpoint = "{receiver.endpoint}"\n'
    )
    rt = await open_runtime(project / "loom.toml")
    runtime_id = rt.context.agent_id
    try:
        trace_id = await Workflow.run(rt)
    finally:
        await rt.aclose()  # flushes the spans and shuts the exporter down
    spans = {s["name"]: s for s in receiver.spans if s["trace_id"] == trace_id}
    assert set(Workflow.EXPORTED) <= set(spans), sorted(spans)

    def parent(name: str) -> str | None:
        return spans[name]["parent_span_id"]

    assert parent("publish w.start") is None
    assert parent("a: process w.start") == spans["publish w.start"]["span_id"]
    assert parent("request b.ask") == spans["a: process w.start"]["span_id"]
    assert parent("publish b.ask") == spans["request b.ask"]["span_id"]
    assert parent("b: process b.ask") == spans["publish b.ask"]["span_id"]
    assert parent("reply b.ask") == spans["b: process b.ask"]["span_id"]
    assert parent("publish w.done") == spans["a: process w.start"]["span_id"]
    kinds = {name: spans[name]["kind"] for name in Workflow.EXPORTED}
    assert kinds == {
        "publish w.start": "PRODUCER",
        "a: process w.start": "CONSUMER",
        "request b.ask": "CLIENT",
        "publish b.ask": "PRODUCER",
        "b: process b.ask": "SERVER",
        "reply b.ask": "PRODUCER",
        "publish w.done": "PRODUCER",
    }
    agents = {name: spans[name]["attributes"].get("loom.agent") for name in Workflow.EXPORTED}
    assert agents["publish w.start"] == runtime_id
    assert {agents[n] for n in ("a: process w.start", "request b.ask", "publish w.done")} == {"a"}
    assert {agents[n] for n in ("b: process b.ask", "reply b.ask")} == {"b"}
    handle = spans["a: process w.start"]["attributes"]
    publish = spans["publish w.start"]["attributes"]
    assert handle["messaging.destination.name"] == publish["messaging.destination.name"]
    assert (handle["messaging.system"], handle["messaging.operation.type"]) == ("loom", "process")
    assert (publish["messaging.system"], publish["messaging.operation.type"]) == ("loom", "send")
    assert publish["messaging.operation.name"] == "publish"
    # what Phoenix-like backends classify by: each handler is its agent's AGENT span
    assert handle["openinference.span.kind"] == "AGENT"
    assert (handle["gen_ai.agent.name"], handle["gen_ai.operation.name"]) == ("a", "invoke_agent")
    assert spans["b: process b.ask"]["attributes"]["gen_ai.agent.name"] == "b"
    assert publish["openinference.span.kind"] == "CHAIN"
    for span in spans.values():
        assert span["service_name"].startswith("loom:")
        assert span["status"] == "UNSET"
        assert span["end_ns"] >= span["start_ns"] > 0
    assert receiver.encodings and set(receiver.encodings) == {""}


async def test_otlp_export_with_gzip_is_decoded(
    project: Path, receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip")
    rt = await open_with(project, tracing={"otlp_endpoint": receiver.endpoint})
    try:
        trace_id = await Workflow.run(rt)
    finally:
        await rt.aclose()
    assert set(receiver.encodings) == {"gzip"}
    names = {s["name"] for s in receiver.spans if s["trace_id"] == trace_id}
    assert set(Workflow.EXPORTED) <= names


async def test_otlp_gets_the_error_spans_of_unsampled_traces(
    project: Path, receiver: OTLPReceiver
) -> None:
    rt = await open_with(project, tracing={"otlp_endpoint": receiver.endpoint, "sample_ratio": 0})
    try:
        await rt.start(Sampled("s"))
        done = await rt.subscribe("ok.done")
        await rt.emit("ok.x", 1)
        await done.get(WAIT)
        bad = await rt.emit("bad.x", 2)
        errors = rt.agents["s"].statistics
        await wait_until(lambda: errors().errors == 1)
    finally:
        await rt.aclose()
    assert bad.traceparent is not None
    (span,) = receiver.spans
    assert (span["name"], span["status"]) == ("s: process bad.x", "ERROR")
    assert span["trace_id"] == bad.traceparent.split("-")[1]
    assert "handler broke on purpose" in span["status_message"]
    assert [event["name"] for event in span["events"]] == ["exception"]


async def test_an_otlp_endpoint_nobody_listens_on_does_not_break_the_runtime(
    project: Path, store: SpanStore
) -> None:
    rt = await open_with(project, tracing={"otlp_endpoint": f"http://127.0.0.1:{free_port()}"})
    try:
        trace_id = await Workflow.run(rt)
        await stored(store, trace_id, *Workflow.SPANS)  # the bus side is unaffected
    finally:
        # closing waits for the exporter's own 5 s timeout at most: it must not hang
        await asyncio.wait_for(rt.aclose(), 30)


# -- the OpenTelemetry API inside a handler --------------------------------------------


async def test_an_otel_api_span_in_a_handler_joins_the_handler_span(
    project: Path, store: SpanStore
) -> None:
    async def job(ctx: Any) -> None:
        with tracer.start_as_current_span("my step") as step:
            step.set_attribute("user.answer", 42)
            with tracer.start_as_current_span("my inner step"):
                pass

    rt = await open_with(project)
    try:
        _, error, trace_id = await probe(rt, job)
        assert error is None
        spans = await stored(store, trace_id, "handle probe.run", "my step", "my inner step")
    finally:
        await rt.aclose()
    handler, step, inner = spans["handle probe.run"], spans["my step"], spans["my inner step"]
    assert_child(step, handler)
    assert_child(inner, step)
    assert step.agent == inner.agent == "probe"
    assert step.attributes["user.answer"] == 42
    assert step.kind == "internal" and step.service.startswith("loom:")


async def test_an_otel_api_span_that_raises_is_an_error(project: Path, store: SpanStore) -> None:
    async def job(ctx: Any) -> None:
        with tracer.start_as_current_span("my failing step"):
            raise ValueError("step broke")

    rt = await open_with(project)
    try:
        _, error, trace_id = await probe(rt, job)
        assert isinstance(error, ValueError)
        spans = await stored(store, trace_id, "handle probe.run", "my failing step")
    finally:
        await rt.aclose()
    step = spans["my failing step"]
    assert step.status == "error"
    assert [e.name for e in step.events] == ["exception"]
    assert step.events[0].attributes["exception.message"] == "step broke"


async def test_an_otel_api_span_error_is_kept_in_an_unsampled_trace(
    project: Path, store: SpanStore
) -> None:
    async def job(ctx: Any) -> None:
        with tracer.start_as_current_span("my failing step"):
            raise ValueError("step broke")

    rt = await open_with(project, tracing={"sample_ratio": 0})
    try:
        _, error, trace_id = await probe(rt, job)  # the probe catches: the handler succeeds
        assert isinstance(error, ValueError)
        # a later error span: once it is stored, the user span would be too (flush order)
        await rt.start(Sampled("s"))
        bad = await rt.emit("bad.x")
        assert bad.traceparent is not None
        await stored(store, bad.traceparent.split("-")[1], "handle bad.x")
    finally:
        await rt.aclose()
    steps = [span for span in store.trace(trace_id) if span.name == "my failing step"]
    assert [(span.status, span.sampled) for span in steps] == [("error", False)]


# -- conversions -----------------------------------------------------------------------


def full_span(kind: str, status: str) -> Span:
    return Span(
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
        parent_id="00f067aa0ba902b7",
        name="handle w.start",
        kind=kind,
        start_ns=1_700_000_000_000_000_000,
        end_ns=1_700_000_000_250_000_000,
        status=status,
        status_message="ValueError: boom" if status == "error" else None,
        service="loom:test",
        agent="a",
        attributes={"loom.handler": "start", "n": 3, "x": 1.5, "ok": True, "seq": ["p", "q"]},
        events=[SpanEvent("exception", 1_700_000_000_100_000_000, {"exception.type": "E"})],
        links=[("1" * 32, "2" * 16), ("3" * 32, "4" * 16)],
    )


@pytest.mark.parametrize(
    ("kind", "otel_kind"),
    [
        ("internal", SpanKind.INTERNAL),
        ("producer", SpanKind.PRODUCER),
        ("consumer", SpanKind.CONSUMER),
        ("client", SpanKind.CLIENT),
        ("server", SpanKind.SERVER),
    ],
)
@pytest.mark.parametrize(
    ("status", "code"),
    [("unset", StatusCode.UNSET), ("ok", StatusCode.OK), ("error", StatusCode.ERROR)],
)
def test_to_readable_and_back_keeps_every_field(
    kind: str, otel_kind: SpanKind, status: str, code: StatusCode
) -> None:
    span = full_span(kind, status)
    readable = to_readable(span, Resource.create({"service.name": "loom:test"}))
    context = readable.get_span_context()
    assert f"{context.trace_id:032x}" == span.trace_id
    assert f"{context.span_id:016x}" == span.span_id
    assert readable.parent is not None and f"{readable.parent.span_id:016x}" == span.parent_id
    assert readable.kind == otel_kind
    assert readable.status.status_code == code
    assert readable.attributes["loom.agent"] == "a"
    assert [(e.name, e.timestamp) for e in readable.events] == [
        ("exception", 1_700_000_000_100_000_000)
    ]
    assert [f"{link.context.trace_id:032x}" for link in readable.links] == ["1" * 32, "3" * 32]
    assert (readable.start_time, readable.end_time) == (span.start_ns, span.end_ns)
    back = from_readable(readable)
    # what other backends read is added on the way out, never in place of Loom's own
    assert back.attributes.items() >= span.attributes.items()
    assert back.attributes["openinference.span.kind"] == "AGENT"  # a handler's span
    back.attributes = span.attributes
    assert back == span


def test_a_root_span_has_no_parent_either_way() -> None:
    span = full_span("producer", "unset")
    span.parent_id = None
    readable = to_readable(span, Resource.create({"service.name": "loom:test"}))
    assert readable.parent is None
    assert from_readable(readable).parent_id is None


def test_non_otel_attribute_values_become_strings() -> None:
    span = full_span("internal", "unset")
    span.attributes = {"nested": {"a": 1}, "seq": ["x", "y"], "none": None}
    readable = to_readable(span, Resource.create({}))
    assert readable.attributes["nested"] == "{'a': 1}"
    assert list(readable.attributes["seq"]) == ["x", "y"]
    assert readable.attributes["none"] == "None"


# -- sampling --------------------------------------------------------------------------


class Sampled(Agent):
    """``ok.x`` succeeds (then ``ok.done``); ``bad.x`` raises."""

    @on_event("ok.x")
    async def fine(self, event, ctx):
        await ctx.emit("ok.done", event.data)

    @on_event("bad.x")
    async def broken(self, event, ctx):
        raise RuntimeError("handler broke on purpose")


async def test_ratio_zero_keeps_only_error_spans_unsampled(project: Path, store: SpanStore) -> None:
    rt = await open_with(project, tracing={"sample_ratio": 0})
    try:
        await rt.start(Sampled("s"))
        done = await rt.subscribe("ok.done")
        ok = await rt.emit("ok.x", 1)
        forwarded = await done.get(WAIT)
        bad = await rt.emit("bad.x", 2)
        assert ok.traceparent is not None and ok.traceparent.endswith("-00")
        assert forwarded.traceparent is not None and forwarded.traceparent.endswith("-00")
        assert bad.traceparent is not None and bad.traceparent.endswith("-00")
        bad_trace = bad.traceparent.split("-")[1]
        error = (await stored(store, bad_trace, "handle bad.x"))["handle bad.x"]
    finally:
        await rt.aclose()
    assert error.status == "error" and error.sampled is False
    assert "handler broke on purpose" in (error.status_message or "")
    # spans are flushed in the order they end: the ok.x spans would be there by now
    assert [span.name for span in store.query(limit=1000)] == ["handle bad.x"]


async def test_ratio_one_keeps_every_span_sampled(project: Path, store: SpanStore) -> None:
    rt = await open_with(project, tracing={"sample_ratio": 1})
    try:
        await rt.start(Sampled("s"))
        done = await rt.subscribe("ok.done")
        ok = await rt.emit("ok.x", 1)
        await done.get(WAIT)
        assert ok.traceparent is not None and ok.traceparent.endswith("-01")
        trace_id = ok.traceparent.split("-")[1]
        spans = await stored(store, trace_id, "publish ok.x", "handle ok.x", "publish ok.done")
    finally:
        await rt.aclose()
    assert all(span.sampled for span in spans.values())


async def test_tracing_disabled_puts_no_traceparent_on_envelopes(project: Path) -> None:
    rt = await open_with(project, tracing={"enabled": False})
    try:
        await rt.start(Sampled("s"))
        done = await rt.subscribe("ok.done")
        sent = await rt.emit("ok.x", 1)
        forwarded = await done.get(WAIT)
    finally:
        await rt.aclose()
    assert sent.traceparent is None and forwarded.traceparent is None
    assert rt.tracing.statistics().recorded == 0


# -- MCP tool spans --------------------------------------------------------------------


async def test_mcp_tool_calls_are_client_spans_under_the_handler(
    project: Path, store: SpanStore
) -> None:
    async def job(ctx: Any) -> dict[str, Any]:
        echoed = await ctx.tool("t.echo", {"text": "hi"})
        with pytest.raises(ToolError, match=r"t\.fail failed"):
            await ctx.tool("t.fail", {"reason": "no luck"})
        return {"echo": echoed, "meta": await ctx.tool("t.meta")}

    rt = await open_with(project, mcp={"t": TEST_SERVER})
    try:
        result, error, trace_id = await probe(rt, job)
        assert error is None and result["echo"] == "hi"
        spans = await stored(
            store, trace_id, "handle probe.run", "tool t.echo", "tool t.fail", "tool t.meta"
        )
    finally:
        await rt.aclose()
    handler = spans["handle probe.run"]
    echo, fail = spans["tool t.echo"], spans["tool t.fail"]
    for span in (echo, fail, spans["tool t.meta"]):
        assert_child(span, handler)
        assert span.kind == "client" and span.agent == "probe"
        assert span.attributes["mcp.server.name"] == "t"
        assert span.attributes["gen_ai.operation.name"] == "execute_tool"
        assert span.attributes["loom.tool.kind"] == "mcp"
    assert echo.attributes["mcp.tool.name"] == "echo"
    assert echo.status == "unset"
    assert fail.attributes["mcp.tool.name"] == "fail"
    assert fail.status == "error" and "t.fail failed" in (fail.status_message or "")
    assert fail.events[0].name == "exception"


async def test_the_mcp_server_receives_the_trace_context_in_meta(
    project: Path, store: SpanStore
) -> None:
    rt = await open_with(project, mcp={"t": TEST_SERVER})
    try:
        received, error, trace_id = await probe(rt, lambda ctx: ctx.tool("t.meta"))
        assert error is None
        parsed = parse_traceparent(received)
        assert parsed is not None, received
        spans = await stored(store, trace_id, "tool t.meta", "MCP send tools/call meta")
    finally:
        await rt.aclose()
    tool_span = spans["tool t.meta"]
    assert parsed[0] == tool_span.trace_id and parsed[2] is True
    # the server's parent is the tool span or (today) the MCP SDK's client span under it
    sent = {span.span_id: span for span in store.trace(trace_id)}[parsed[1]]
    assert sent.span_id == tool_span.span_id or sent.parent_id == tool_span.span_id


# -- LLM spans -------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        yield running


@pytest.fixture(autouse=True)
def _no_provider_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


@pytest.fixture
async def llm_rt(project: Path, server: OpenAIServer) -> AsyncIterator[Runtime]:
    rt = await open_with(
        project, llm={"local": {"model": MODEL, "api_base": server.url, "timeout_sec": 5}}
    )
    try:
        yield rt
    finally:
        await rt.aclose()


def chat_spans(store: SpanStore, trace_id: str) -> list[Span]:
    return [span for span in store.trace(trace_id) if span.name.startswith("chat ")]


async def test_an_llm_call_makes_one_genai_client_span(
    llm_rt: Runtime, server: OpenAIServer, store: SpanStore
) -> None:
    server.push(Reply(content="the word is zanzibar", prompt_tokens=17, completion_tokens=5))
    response, error, trace_id = await probe(
        llm_rt, lambda ctx: ctx.llm("local").complete("what is the secret word?")
    )
    assert error is None
    spans = await stored(store, trace_id, "handle probe.run", f"chat {MODEL}")
    (chat,) = chat_spans(store, trace_id)
    assert_child(chat, spans["handle probe.run"])
    assert chat.kind == "client" and chat.agent == "probe" and chat.status == "unset"
    attributes = chat.attributes
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.system"] == "openai"
    assert attributes["gen_ai.request.model"] == MODEL
    assert attributes["gen_ai.response.model"] == response.model
    assert server.model_name in response.model
    assert attributes["gen_ai.usage.input_tokens"] == 17
    assert attributes["gen_ai.usage.output_tokens"] == 5
    assert attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert attributes["loom.llm.latency_ms"] > 0
    # no content unless [tracing] capture_content = true
    assert chat.events == []
    assert "secret" not in str(attributes) and "zanzibar" not in str(attributes)


async def test_a_streamed_llm_call_makes_exactly_one_span(
    llm_rt: Runtime, server: OpenAIServer, store: SpanStore
) -> None:
    server.push(Reply(content="one two three", prompt_tokens=4, completion_tokens=3))

    async def job(ctx: Any) -> str:
        stream = ctx.llm("local").stream("count to three")
        return "".join([piece async for piece in stream])

    text, error, trace_id = await probe(llm_rt, job)
    assert error is None and text == "one two three"
    await stored(store, trace_id, "handle probe.run", f"chat {MODEL}")
    (chat,) = chat_spans(store, trace_id)
    assert chat.attributes["gen_ai.usage.input_tokens"] == 4
    assert chat.attributes["gen_ai.usage.output_tokens"] == 3
    assert chat.status == "unset"


async def test_a_failed_llm_call_marks_its_span_error(
    llm_rt: Runtime, server: OpenAIServer, store: SpanStore
) -> None:
    server.stop()
    _, error, trace_id = await probe(llm_rt, lambda ctx: ctx.llm("local").complete("anyone?"))
    assert isinstance(error, LLMError)
    await stored(store, trace_id, f"chat {MODEL}")
    (chat,) = chat_spans(store, trace_id)
    assert chat.status == "error"
    assert "cannot reach" in (chat.status_message or "")
    assert [e.name for e in chat.events] == ["exception"]
    assert "gen_ai.usage.input_tokens" not in chat.attributes


async def test_capture_content_records_the_messages_as_genai_attributes(
    project: Path, server: OpenAIServer, store: SpanStore
) -> None:
    server.push(Reply(content="the answer is 42"))
    rt = await open_with(
        project,
        llm={"local": {"model": MODEL, "api_base": server.url, "timeout_sec": 5}},
        tracing={"capture_content": True},
    )
    try:
        _, error, trace_id = await probe(
            rt, lambda ctx: ctx.llm("local").complete("what is the answer?")
        )
        assert error is None
        await stored(store, trace_id, f"chat {MODEL}")
    finally:
        await rt.aclose()
    (chat,) = chat_spans(store, trace_id)
    assert json.loads(chat.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "what is the answer?"}]}
    ]
    assert json.loads(chat.attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "the answer is 42"}],
            "finish_reason": "stop",
        }
    ]
    assert chat.events == []
