"""The conventions other backends read, added to Loom's spans on the way out."""

from __future__ import annotations

import json

import pytest

from loom_kernel.protocol import Span
from loom_kernel.tracing.semconv import export_attributes, export_name, span_kind

T, S = "a" * 32, "b" * 16


def span(name: str, kind: str = "internal", agent: str | None = "trend", **attributes) -> Span:
    return Span(T, S, None, name, kind, 1, 2, agent=agent, attributes=attributes)


@pytest.mark.parametrize(
    ("made", "expected"),
    [
        (
            span(
                "handle market.price.AAPL",
                "consumer",
                **{"loom.handler": "on_tick", "messaging.destination.name": "market.price.AAPL"},
            ),
            "AGENT",
        ),
        (
            span(
                "serve quote",
                "server",
                **{"loom.handler": "quote", "messaging.destination.name": "loom.tool.quote"},
            ),
            "TOOL",
        ),
        (span("tool web-search", "client", **{"gen_ai.operation.name": "execute_tool"}), "TOOL"),
        (span("chat openai/gpt", "client", **{"gen_ai.operation.name": "chat"}), "LLM"),
        (
            span(
                "publish market.price.AAPL",
                "producer",
                **{"messaging.destination.name": "market.price.AAPL"},
            ),
            "CHAIN",
        ),
        (span("fan_in", **{"loom.pattern": "fan_in"}), "CHAIN"),
    ],
)
def test_each_span_gets_its_openinference_kind(made: Span, expected: str) -> None:
    assert span_kind(made) == expected
    assert export_attributes(made)["openinference.span.kind"] == expected


def test_a_handler_span_names_its_agent_the_genai_way() -> None:
    handler = span(
        "handle market.price.AAPL",
        "consumer",
        **{"loom.handler": "on_tick", "messaging.destination.name": "market.price.AAPL"},
    )
    added = export_attributes(handler)
    assert (added["gen_ai.agent.name"], added["gen_ai.agent.id"]) == ("trend", "trend")
    assert added["gen_ai.operation.name"] == "invoke_agent"
    assert (added["messaging.system"], added["messaging.operation.type"]) == ("loom", "process")
    assert added["loom.agent"] == "trend"


def test_sibling_agents_handling_one_event_get_names_that_differ() -> None:
    # four agents handle the same tick: a backend's list must tell their spans apart
    names = [
        export_name(
            span(
                "handle market.price.AAPL",
                "consumer",
                agent,
                **{"loom.handler": "on_tick", "messaging.destination.name": "market.price.AAPL"},
            )
        )
        for agent in ("executor", "trend", "risk", "sentiment")
    ]
    assert names == [
        "executor: process market.price.AAPL",
        "trend: process market.price.AAPL",
        "risk: process market.price.AAPL",
        "sentiment: process market.price.AAPL",
    ]


@pytest.mark.parametrize(
    ("made", "exported"),
    [
        (
            span(
                "serve add",
                "server",
                "calc",
                **{"loom.handler": "add", "messaging.destination.name": "loom.tool.add"},
            ),
            "calc: execute_tool add",
        ),
        (
            span(
                "tool time.now",
                "client",
                **{"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "time.now"},
            ),
            "execute_tool time.now",
        ),
        (span("publish x.y", "producer", **{"messaging.destination.name": "x.y"}), "publish x.y"),
        (span("chat openai/gpt", "client", **{"gen_ai.operation.name": "chat"}), "chat openai/gpt"),
        (span("my step"), "my step"),
        # a handler span of a process that does not know its agent keeps its name
        (
            span(
                "handle a.b",
                "consumer",
                None,
                **{"loom.handler": "h", "messaging.destination.name": "a.b"},
            ),
            "handle a.b",
        ),
    ],
)
def test_tools_follow_the_genai_names_and_other_spans_keep_theirs(
    made: Span, exported: str
) -> None:
    assert export_name(made) == exported


def test_a_publish_span_is_a_messaging_send() -> None:
    added = export_attributes(
        span("publish x.y", "producer", **{"messaging.destination.name": "x.y"})
    )
    assert (added["messaging.operation.type"], added["messaging.operation.name"]) == (
        "send",
        "publish",
    )
    assert "gen_ai.agent.name" not in added


def test_an_llm_span_shows_model_tokens_input_and_output() -> None:
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "hi"}]}])
    answer = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "yo"}]}])
    added = export_attributes(
        span(
            "chat openai/gpt",
            "client",
            **{
                "gen_ai.operation.name": "chat",
                "gen_ai.request.model": "openai/gpt",
                "gen_ai.response.model": "gpt-4o-mini",
                "gen_ai.provider.name": "openai",
                "gen_ai.usage.input_tokens": 12,
                "gen_ai.usage.output_tokens": 3,
                "gen_ai.input.messages": messages,
                "gen_ai.output.messages": answer,
            },
        )
    )
    assert added["llm.model_name"] == "gpt-4o-mini"
    assert (added["llm.token_count.prompt"], added["llm.token_count.completion"]) == (12, 3)
    assert added["llm.token_count.total"] == 15
    assert (added["input.value"], added["output.value"]) == (messages, answer)
    assert added["input.mime_type"] == "application/json"


def test_links_are_listed_for_backends_that_do_not_draw_them() -> None:
    gathered = span("fan_in")
    gathered.links = [("1" * 32, "2" * 16)]
    assert export_attributes(gathered)["loom.links"] == [f"{'1' * 32}/{'2' * 16}"]


def test_loom_s_own_attributes_win_over_added_ones() -> None:
    mine = span("x", **{"openinference.span.kind": "RETRIEVER"})
    assert export_attributes(mine)["openinference.span.kind"] == "RETRIEVER"
