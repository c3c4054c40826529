"""LLM providers: every call goes through a real runtime and litellm to a real local
HTTP server speaking the OpenAI chat-completions API (``tests/support/openai_server.py``)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from loom_kernel import Agent, ConfigError, LLMError, Runtime, on_event, open_runtime, tool
from loom_kernel.capabilities.llm import LLMResponse, LLMStatistics, ToolCall, Usage
from loom_kernel.config import parse_config
from loom_kernel.errors import LLMTimeout
from tests.conftest import PYTHON, free_port, python_env, wait_until
from tests.support import openai_server
from tests.support.openai_server import OpenAIServer, Reply

pytestmark = pytest.mark.timeout(60)

MODEL = "openai/loom-test"
SLOW = 3.0  # seconds a "slow" reply waits: well past every timeout_sec below
TIMEOUT = 0.5


@pytest.fixture(autouse=True)
def _in_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every runtime here runs in the test's own project folder (its bus, its .loom/),
    with no provider key from the caller's environment."""
    for variable in ("OPENAI_API_KEY", "DEEPSEEK_API_KEY"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as running:
        yield running


@pytest.fixture
def authorization(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The ``Authorization`` header of every chat request (the test server keeps bodies only)."""
    seen: list[str | None] = []
    handle = openai_server._Handler.do_POST

    def recording(handler: Any) -> None:
        seen.append(handler.headers.get("Authorization"))
        handle(handler)

    monkeypatch.setattr(openai_server._Handler, "do_POST", recording)
    return seen


@pytest.fixture
def dead_url() -> str:
    """The address of a server that was started, then stopped: nothing listens there."""
    stopped = OpenAIServer().start()
    stopped.stop()
    return stopped.url


def entry(url: str, **settings: Any) -> dict[str, Any]:
    """An ``[llm.*]`` entry for the test server."""
    return {"model": MODEL, "api_base": url, **settings}


async def runtime(llm: dict[str, dict[str, Any]], **sections: Any) -> Runtime:
    return await open_runtime(parse_config({"llm": llm, **sections}))


@pytest.fixture
async def llm_rt(server: OpenAIServer, dead_url: str) -> AsyncIterator[Runtime]:
    """A runtime whose ``x`` talks to ``server``, ``slow`` times out fast, ``down`` is dead."""
    rt = await runtime(
        {
            "x": entry(server.url),
            "slow": entry(server.url, timeout_sec=TIMEOUT),
            "down": entry(dead_url),
        }
    )
    try:
        yield rt
    finally:
        await rt.aclose()


class Plan(BaseModel):
    steps: list[str]
    priority: int


PLAN = '{"steps": ["read", "write"], "priority": 2}'


# -- plain completion ----------------------------------------------------------------


async def test_complete_returns_text_usage_latency_model_and_finish_reason(
    llm_rt: Runtime, server: OpenAIServer
):
    server.push(Reply(content="AAPL rose three percent", prompt_tokens=11, completion_tokens=4))

    answer = await llm_rt.llm("x").complete("Summarise AAPL's week")

    assert isinstance(answer, LLMResponse)
    assert answer.text == "AAPL rose three percent"
    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (11, 4)
    assert answer.usage.total_tokens == 15
    assert answer.usage.latency_s > 0
    assert (answer.model, answer.provider, answer.finish_reason) == ("loom-test", "x", "stop")
    assert answer.tool_calls == []
    assert answer.message == {"role": "assistant", "content": "AAPL rose three percent"}


async def test_usage_defaults_to_the_servers_own_count(llm_rt: Runtime, server: OpenAIServer):
    # the test server counts words: 3 in the prompt, 2 in the answer
    server.push(Reply(content="two words"))

    answer = await llm_rt.llm("x").complete("one two three")

    assert (answer.usage.input_tokens, answer.usage.output_tokens) == (3, 2)


async def test_loom_toml_settings_and_pass_through_keys_reach_the_server(
    project: Path, server: OpenAIServer
):
    (project / "loom.toml").write_text(
        f"""
[llm.x]
model = "{MODEL}"
api_base = "{server.url}"
temperature = 0.3
max_tokens = 20
top_p = 0.5
seed = 7
"""
    )
    async with open_runtime(project / "loom.toml") as rt:
        await rt.llm("x").complete("hi")

    (request,) = server.requests
    assert request["model"] == "loom-test"
    assert (request["temperature"], request["max_tokens"]) == (0.3, 20)
    assert (request["top_p"], request["seed"]) == (0.5, 7)


async def test_call_parameters_override_loom_toml(server: OpenAIServer):
    rt = await runtime({"x": entry(server.url, temperature=0.3)})
    async with rt:
        await rt.llm("x").complete("hi", temperature=0.9, max_tokens=5)

    assert (server.requests[0]["temperature"], server.requests[0]["max_tokens"]) == (0.9, 5)


async def test_system_message_goes_first(llm_rt: Runtime, server: OpenAIServer):
    await llm_rt.llm("x").complete("hi", system="Be brief.")

    assert server.requests[0]["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]


async def test_messages_may_be_a_list_of_dicts_kept_in_order(llm_rt: Runtime, server: OpenAIServer):
    history = [
        {"role": "user", "content": "Name a fruit."},
        {"role": "assistant", "content": "Apple."},
        {"role": "user", "content": "Another."},
    ]

    await llm_rt.llm("x").complete(history, system="Be brief.")

    sent = server.requests[0]["messages"]
    assert sent[0] == {"role": "system", "content": "Be brief."}
    assert sent[1:] == history
    assert len(history) == 3  # the caller's list is not modified


async def test_a_provider_is_made_once_per_context(llm_rt: Runtime):
    assert llm_rt.llm("x") is llm_rt.llm("x")
    assert repr(llm_rt.llm("x")) == f"<ModelProvider 'x' {MODEL}>"


# -- streaming -----------------------------------------------------------------------


async def test_stream_yields_pieces_that_join_to_the_content(llm_rt: Runtime, server: OpenAIServer):
    server.push(Reply(content="once upon a time", prompt_tokens=6, completion_tokens=4))
    llm = llm_rt.llm("x")

    stream = llm.stream("Tell me a story", system="Be brief.")
    pieces = [piece async for piece in stream]

    assert len(pieces) > 1
    assert "".join(pieces) == "once upon a time"
    response = stream.response
    assert response is not None
    assert response.text == "once upon a time"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (6, 4)
    assert response.usage.latency_s > 0
    assert (response.provider, response.finish_reason) == ("x", "stop")
    request = server.requests[0]
    assert request["stream"] is True
    assert request["messages"][0] == {"role": "system", "content": "Be brief."}
    stats = llm.statistics()
    assert (stats.calls, stats.errors, stats.input_tokens, stats.output_tokens) == (1, 0, 6, 4)


async def test_a_stream_that_times_out_raises_llm_timeout_and_counts_the_error(
    llm_rt: Runtime, server: OpenAIServer
):
    server.push(Reply(content="late", delay=SLOW))
    llm = llm_rt.llm("slow")

    with pytest.raises(LLMTimeout, match=r"did not answer within 0\.5 s"):
        _ = [piece async for piece in llm.stream("hi")]

    assert (llm.statistics().calls, llm.statistics().errors) == (1, 1)
    assert [piece async for piece in llm.stream("again")] == ["ok"]


# -- tool calling ----------------------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


async def test_an_openai_tool_dict_is_sent_as_is(llm_rt: Runtime, server: OpenAIServer):
    server.push(Reply(tool_calls=[{"name": "weather", "arguments": {"city": "Paris"}}]))

    answer = await llm_rt.llm("x").complete("Weather in Paris?", tools=[WEATHER])

    assert server.requests[0]["tools"] == [WEATHER]
    assert answer.tool_calls == [ToolCall(id="call_1", name="weather", arguments={"city": "Paris"})]
    assert (answer.text, answer.finish_reason) == ("", "tool_calls")


async def test_tool_choice_is_sent_with_the_tools(llm_rt: Runtime, server: OpenAIServer):
    await llm_rt.llm("x").complete("hi", tools=[WEATHER], tool_choice="required")

    assert server.requests[0]["tool_choice"] == "required"


class Prices(Agent):
    @tool("prices.latest")
    async def latest(self, symbol: str, limit: int = 10) -> list[float]:
        """The last prices of a symbol."""
        return [101.5, 102.0][:limit]


async def test_a_loom_tool_name_sends_its_schema_and_maps_the_call_back(
    llm_rt: Runtime, server: OpenAIServer
):
    await llm_rt.start(Prices("prices"))
    server.push(Reply(tool_calls=[{"name": "prices__latest", "arguments": {"symbol": "AAPL"}}]))
    llm = llm_rt.llm("x")

    answer = await llm.complete("AAPL price?", tools=["prices.latest"])

    (spec,) = server.requests[0]["tools"]
    assert spec["type"] == "function"
    function = spec["function"]
    assert (function["name"], function["description"]) == (
        "prices__latest",
        "The last prices of a symbol.",
    )
    assert function["parameters"]["required"] == ["symbol"]
    assert set(function["parameters"]["properties"]) == {"symbol", "limit"}
    (call,) = answer.tool_calls
    assert (call.name, call.arguments) == ("prices.latest", {"symbol": "AAPL"})
    # the model's call runs as a Loom tool, and the conversation goes on
    result = await llm_rt.tool(call.name, call.arguments)
    assert result == [101.5, 102.0]
    history = [
        {"role": "user", "content": "AAPL price?"},
        answer.message,
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps(result)},
    ]
    server.push(Reply(content="AAPL is at 102."))
    final = await llm.complete(history, tools=["prices.latest"])
    assert final.text == "AAPL is at 102."
    assert answer.message == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "prices__latest", "arguments": '{"symbol": "AAPL"}'},
            }
        ],
    }
    sent = server.requests[1]["messages"]
    assert sent[1]["tool_calls"] == answer.message["tool_calls"]
    assert sent[2] == {"role": "tool", "tool_call_id": "call_1", "content": "[101.5, 102.0]"}


async def test_an_unknown_tool_name_raises_llm_error_listing_the_known_ones(
    llm_rt: Runtime, server: OpenAIServer
):
    await llm_rt.start(Prices("prices"))

    with pytest.raises(LLMError, match=r"no such tool on the bus \(known: prices.latest\)"):
        await llm_rt.llm("x").complete("hi", tools=["prices.lastest"])

    assert server.requests == []


# -- structured output -----------------------------------------------------------------


async def test_structured_returns_the_validated_model(llm_rt: Runtime, server: OpenAIServer):
    server.push(Reply(content=PLAN))

    plan = await llm_rt.llm("x").structured("Plan my day", Plan)

    assert plan == Plan(steps=["read", "write"], priority=2)
    (request,) = server.requests
    assert request["response_format"] == {"type": "json_object"}
    system = request["messages"][0]
    assert system["role"] == "system"
    assert json.dumps(Plan.model_json_schema()) in system["content"]


async def test_structured_keeps_the_callers_system_message(llm_rt: Runtime, server: OpenAIServer):
    server.push(Reply(content=PLAN))

    await llm_rt.llm("x").structured("Plan my day", Plan, system="You plan days.")

    system = server.requests[0]["messages"][0]["content"]
    assert system.startswith("You plan days.\n\n")
    assert "JSON schema" in system


async def test_an_invalid_answer_gets_one_repair_round_with_the_problem(
    llm_rt: Runtime, server: OpenAIServer
):
    server.push(Reply(content='{"steps": ["read"]}'), Reply(content=PLAN))

    plan = await llm_rt.llm("x").structured("Plan my day", Plan)

    assert plan.priority == 2
    assert len(server.requests) == 2
    repair = server.requests[1]["messages"]
    assert repair[-2] == {"role": "assistant", "content": '{"steps": ["read"]}'}
    assert repair[-1]["role"] == "user"
    assert "priority: Field required" in repair[-1]["content"]


async def test_a_reply_without_json_is_repaired_too(llm_rt: Runtime, server: OpenAIServer):
    server.push(Reply(content="Sure! Here is your plan."), Reply(content=PLAN))

    plan = await llm_rt.llm("x").structured("Plan my day", Plan)

    assert plan.steps == ["read", "write"]
    assert "no JSON object in the reply" in server.requests[1]["messages"][-1]["content"]


async def test_invalid_twice_raises_llm_error_naming_the_model_and_the_reply(
    llm_rt: Runtime, server: OpenAIServer
):
    server.push(Reply(content="not json"), Reply(content='{"steps": "nope"}'))
    llm = llm_rt.llm("x")

    with pytest.raises(LLMError) as info:
        await llm.structured("Plan my day", Plan)

    message = str(info.value)
    assert "without a valid Plan" in message
    assert """last answer: '{"steps": "nope"}'""" in message
    assert len(server.requests) == 2
    stats = llm.statistics()
    assert (stats.calls, stats.errors) == (2, 1)
    assert stats.last_error is not None and stats.last_error.startswith("invalid JSON twice")


async def test_json_inside_code_fences_is_accepted(llm_rt: Runtime, server: OpenAIServer):
    server.push(Reply(content=f"```json\n{PLAN}\n```"))

    plan = await llm_rt.llm("x").structured("Plan my day", Plan)

    assert plan.priority == 2
    assert len(server.requests) == 1


async def test_complete_structured_returns_the_response_with_parsed(
    llm_rt: Runtime, server: OpenAIServer
):
    server.push(Reply(content=PLAN, prompt_tokens=50, completion_tokens=9))

    response = await llm_rt.llm("x").complete_structured("Plan my day", Plan)

    assert response.parsed == Plan(steps=["read", "write"], priority=2)
    assert (response.text, response.usage.output_tokens) == (PLAN, 9)


async def test_json_mode_false_sends_no_response_format(server: OpenAIServer):
    server.push(Reply(content=PLAN))
    rt = await runtime({"x": entry(server.url, json_mode=False)})
    async with rt:
        plan = await rt.llm("x").structured("Plan my day", Plan)

    assert plan.priority == 2
    assert "response_format" not in server.requests[0]


# -- errors: each one clear, and the next call works -----------------------------------


@pytest.mark.parametrize("where", ["stopped server", "unused port"])
async def test_an_unreachable_server_raises_cannot_reach(
    where: str, dead_url: str, server: OpenAIServer
):
    url = dead_url if where == "stopped server" else f"http://127.0.0.1:{free_port()}/v1"
    rt = await runtime({"down": entry(url), "x": entry(server.url)})
    async with rt:
        with pytest.raises(LLMError, match=r"\[llm.down\] cannot reach openai/loom-test") as info:
            await rt.llm("down").complete("hi")
        assert url in str(info.value)
        assert "is the server up?" in str(info.value)

        assert (await rt.llm("x").complete("hi")).text == "ok"


async def test_a_slow_answer_raises_llm_timeout(llm_rt: Runtime, server: OpenAIServer):
    server.push(Reply(content="late", delay=SLOW))
    llm = llm_rt.llm("slow")

    with pytest.raises(LLMTimeout) as info:
        await llm.complete("hi")

    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, LLMError)
    assert "[llm.slow] openai/loom-test did not answer within 0.5 s" in str(info.value)
    assert "raise timeout_sec" in str(info.value)
    assert len(server.requests) == 1  # num_retries = 0: no hidden second try
    assert (await llm.complete("hi")).text == "ok"


async def test_a_timeout_message_names_the_per_call_timeout(llm_rt: Runtime, server: OpenAIServer):
    server.push(Reply(content="late", delay=SLOW))

    llm = llm_rt.llm("x")  # [llm.x] timeout_sec = 60

    with pytest.raises(LLMTimeout, match=r"within 0\.5 s"):
        await llm.complete("hi", timeout=TIMEOUT)

    server.push(Reply(content="late", delay=SLOW))
    with pytest.raises(LLMTimeout, match=r"within 0\.5 s"):
        _ = [piece async for piece in llm.stream("hi", timeout=TIMEOUT)]
    assert (llm.statistics().errors, (await llm.complete("hi")).text) == (2, "ok")


async def test_an_http_500_raises_llm_error_with_the_status(llm_rt: Runtime, server: OpenAIServer):
    server.push(Reply(status=500, error_message="the model crashed"))
    llm = llm_rt.llm("x")

    with pytest.raises(LLMError, match="failed HTTP 500") as info:
        await llm.complete("hi")

    assert "the model crashed" in str(info.value)
    assert not isinstance(info.value, LLMTimeout)
    assert len(server.requests) == 1
    assert (await llm.complete("hi")).text == "ok"


async def test_a_rejected_key_names_where_the_key_comes_from(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("LOOM_TEST_KEY", "sk-wrong")
    rt = await runtime(
        {"env": entry(server.url, api_key_env="LOOM_TEST_KEY"), "lit": entry(server.url)}
    )
    async with rt:
        server.push(Reply(status=401, error_message="Incorrect API key provided"))
        with pytest.raises(LLMError, match=r"rejected the API key .*check \$LOOM_TEST_KEY"):
            await rt.llm("env").complete("hi")

        server.push(Reply(status=401))
        with pytest.raises(LLMError, match=r"check api_key / api_key_env in \[llm.lit\]"):
            await rt.llm("lit").complete("hi")

        assert (await rt.llm("env").complete("hi")).text == "ok"


async def test_an_unset_key_variable_is_named_and_read_again_on_the_next_call(
    server: OpenAIServer, monkeypatch: pytest.MonkeyPatch, authorization: list[str | None]
):
    monkeypatch.delenv("LOOM_TEST_KEY", raising=False)
    rt = await runtime({"x": entry(server.url, api_key_env="LOOM_TEST_KEY")})
    async with rt:
        llm = rt.llm("x")
        with pytest.raises(LLMError, match=r"\$LOOM_TEST_KEY, which is not set") as info:
            await llm.complete("hi")
        assert "export LOOM_TEST_KEY=" in str(info.value)
        assert server.requests == []  # nothing left without a key
        assert llm.statistics().errors == 1

        monkeypatch.setenv("LOOM_TEST_KEY", "sk-test-123")
        assert (await llm.complete("hi")).text == "ok"

    assert authorization == ["Bearer sk-test-123"]


async def test_a_key_in_loom_toml_is_sent_and_a_local_server_gets_a_placeholder(
    server: OpenAIServer, authorization: list[str | None]
):
    rt = await runtime({"keyed": entry(server.url, api_key="sk-file"), "local": entry(server.url)})
    async with rt:
        await rt.llm("keyed").complete("hi")
        await rt.llm("local").complete("hi")

    assert authorization == ["Bearer sk-file", "Bearer no-key-needed"]


async def test_the_providers_own_key_variable_is_used_behind_an_api_base(
    server: OpenAIServer, authorization: list[str | None], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    rt = await runtime({"proxy": entry(server.url)})
    async with rt:
        await rt.llm("proxy").complete("hi")

    assert authorization == ["Bearer sk-from-env"]


async def test_an_unknown_provider_name_lists_the_declared_ones(llm_rt: Runtime):
    with pytest.raises(LLMError, match=r"no \[llm.gpt\]") as info:
        llm_rt.llm("gpt")

    assert "(declared: x, slow, down)" in str(info.value)
    assert "docs/llm.md" in str(info.value)
    assert (await llm_rt.llm("x").complete("hi")).text == "ok"


async def test_no_llm_section_at_all_says_none_are_declared(rt: Runtime):
    with pytest.raises(LLMError, match=r"declared: none"):
        rt.llm("deepseek")


@pytest.mark.parametrize(
    "messages",
    [42, {"role": "user", "content": "hi"}, [{"role": "user", "content": "hi"}, "and this"]],
    ids=["int", "a single dict", "a list with a str"],
)
async def test_bad_messages_raise_llm_error_before_any_request(
    messages: Any, llm_rt: Runtime, server: OpenAIServer
):
    with pytest.raises(LLMError, match="messages must be a str or a list of"):
        await llm_rt.llm("x").complete(messages)

    assert server.requests == []


class Asker(Agent):
    @on_event("ask.in")
    async def ask(self, event, ctx):
        answer = await ctx.llm("slow").complete(event.data)
        await ctx.emit("ask.out", answer.text)


async def test_an_llm_timeout_in_a_handler_is_isolated(llm_rt: Runtime, server: OpenAIServer):
    server.push(Reply(content="late", delay=SLOW), Reply(content="on time"))
    out = await llm_rt.subscribe("ask.out")
    await llm_rt.start(Asker("asker"))

    await llm_rt.emit("ask.in", "first")
    await llm_rt.emit("ask.in", "second")

    assert (await out.get(timeout=5)).data == "on time"
    await wait_until(lambda: llm_rt.agents["asker"].handled == 2)
    stats = llm_rt.agents["asker"].statistics()
    assert (stats.status, stats.errors) == ("running", 1)
    assert stats.last_error is not None
    assert stats.last_error.startswith("LLMTimeout: [llm.slow]")


# -- router ----------------------------------------------------------------------------


async def test_the_router_falls_back_when_its_pool_is_down(server: OpenAIServer, dead_url: str):
    server.push(Reply(content="from b"))
    rt = await runtime(
        {"a": entry(dead_url), "b": {"model": "openai/b-model", "api_base": server.url}},
        router={"models": ["a"], "fallbacks": ["b"], "num_retries": 0},
    )
    async with rt:
        answer = await rt.llm("router").complete("hi")

    assert (answer.text, answer.model, answer.provider) == ("from b", "b-model", "router")
    assert server.requests[0]["model"] == "b-model"


async def test_the_router_reports_a_whole_pool_down_as_cannot_reach(dead_url: str):
    rt = await runtime(
        {"a": entry(dead_url), "b": entry(dead_url)},
        router={"models": ["a"], "fallbacks": ["b"], "num_retries": 0},
    )
    async with rt:
        router = rt.llm("router")
        assert router.model == "router(a)"
        with pytest.raises(LLMError, match="cannot reach router"):
            await router.complete("hi")
        assert router.statistics().errors == 1


async def test_a_router_without_models_raises_llm_error(server: OpenAIServer):
    rt = await runtime({"a": entry(server.url)})
    async with rt:
        with pytest.raises(LLMError, match=r"\[router\] has no models: add `models = \["):
            rt.llm("router")


@pytest.mark.parametrize("key", ["models", "fallbacks"])
def test_a_router_naming_an_unknown_entry_is_a_config_error(key: str):
    router = {"models": ["a"], key: ["a", "gpt"]} if key == "fallbacks" else {key: ["gpt"]}

    with pytest.raises(ConfigError, match=rf"\[router\] {key} names 'gpt'") as info:
        parse_config({"llm": {"a": {"model": MODEL}}, "router": router})

    assert "(declared: a)" in str(info.value)


async def test_a_router_fallback_with_json_mode_off_gets_no_response_format(
    server: OpenAIServer, dead_url: str
):
    server.push(Reply(content=PLAN))
    rt = await runtime(
        {"a": entry(dead_url), "b": entry(server.url, json_mode=False)},
        router={"models": ["a"], "fallbacks": ["b"], "num_retries": 0},
    )
    async with rt:
        await rt.llm("router").structured("Plan my day", Plan)

    assert "response_format" not in server.requests[0]


# -- usage events and statistics -------------------------------------------------------


async def test_every_call_publishes_its_usage(llm_rt: Runtime, server: OpenAIServer):
    usage = await llm_rt.subscribe("loom.llm.*")
    server.push(Reply(content="hi there", prompt_tokens=7, completion_tokens=2))

    await llm_rt.llm("x").complete("hello")

    event = await usage.get(timeout=2)
    assert (event.topic, event.type, event.source) == (
        "loom.llm.x.usage",
        "llm",
        llm_rt.context.agent_id,
    )
    data = event.data
    assert (data["ok"], data["model"]) == (True, "loom-test")
    assert (data["input_tokens"], data["output_tokens"]) == (7, 2)
    assert data["latency_ms"] > 0
    assert "cost_usd" in data


async def test_a_failed_call_publishes_ok_false_with_the_error(
    llm_rt: Runtime, server: OpenAIServer
):
    usage = await llm_rt.subscribe("loom.llm.*")
    server.push(Reply(status=500))

    with pytest.raises(LLMError):
        await llm_rt.llm("x").complete("hello")

    data = (await usage.get(timeout=2)).data
    assert (data["ok"], data["model"]) == (False, MODEL)
    assert "HTTP 500" in data["error"]
    assert data["latency_ms"] > 0


async def test_an_agents_calls_are_published_under_its_id(llm_rt: Runtime, server: OpenAIServer):
    usage = await llm_rt.subscribe("loom.llm.slow.usage")
    out = await llm_rt.subscribe("ask.out")
    await llm_rt.start(Asker("asker"))

    await llm_rt.emit("ask.in", "hi")

    assert (await out.get(timeout=5)).data == "ok"
    event = await usage.get(timeout=2)
    assert (event.source, event.data["ok"]) == ("asker", True)


async def test_statistics_count_calls_errors_tokens_and_the_last_error(
    llm_rt: Runtime, server: OpenAIServer
):
    llm = llm_rt.llm("x")
    server.push(
        Reply(content="a", prompt_tokens=10, completion_tokens=3),
        Reply(status=500, error_message="overloaded"),
        Reply(content="b", prompt_tokens=5, completion_tokens=2),
    )
    await llm.complete("one")
    with pytest.raises(LLMError):
        await llm.complete("two")
    await llm.complete("three")

    stats = llm.statistics()
    assert isinstance(stats, LLMStatistics)
    assert (stats.name, stats.model) == ("x", MODEL)
    assert (stats.calls, stats.errors) == (3, 1)
    assert (stats.input_tokens, stats.output_tokens) == (15, 5)
    assert stats.last_error is not None and "overloaded" in stats.last_error
    assert 0 < stats.latency_p50_ms <= stats.latency_p99_ms
    assert stats.cost_usd == 0.0  # litellm knows no price for a local model
    assert stats.to_dict()["calls"] == 3


def test_usage_adds_up_tokens():
    assert Usage(input_tokens=3, output_tokens=4).total_tokens == 7


# -- offline ---------------------------------------------------------------------------


def test_litellm_is_imported_with_its_local_price_map():
    env = python_env()
    env.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)
    # any attempt to fetch the price map would go to a proxy that is not there
    env.update(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    code = (
        "import sys, os; from loom_kernel.capabilities.llm import _litellm as m; "
        "print('litellm' in sys.modules); lite = m.load_litellm(); "
        "print(os.environ['LITELLM_LOCAL_MODEL_COST_MAP']); "
        "print(len(lite.model_cost) > 100, lite.telemetry)"
    )
    done = subprocess.run(
        [PYTHON, "-c", code], env=env, capture_output=True, text=True, timeout=30, check=False
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "True", "True", "False"]
