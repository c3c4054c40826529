"""The scripted OpenAI server, exercised the way Loom uses it: through litellm, over TCP.

These tests also pin down how litellm reports failures against an OpenAI-compatible
endpoint (timeouts, HTTP errors, a dead server, retries), which Loom's LLM layer relies on.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

# litellm fetches its model cost map from the internet at import unless told not to
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import litellm

from tests.support.openai_server import OpenAIServer, Reply, split_words

pytestmark = pytest.mark.timeout(30)

MODEL = "openai/loom-test"
MESSAGES = [{"role": "user", "content": "what time is it"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "The current time in a time zone.",
            "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer() as srv:
        yield srv


async def complete(server: OpenAIServer, **kwargs):
    """One litellm call against ``server``; keyword arguments override the defaults."""
    params = {"model": MODEL, "api_base": server.url, "api_key": "test-key", "messages": MESSAGES}
    # model_info as Loom's own calls carry it: a cost router made by an earlier test of the
    # same worker watches every call of the process, and logs a traceback without it
    params["model_info"] = {"id": "test-openai-server"}
    return await litellm.acompletion(**{**params, **kwargs})


def http(server: OpenAIServer, path: str, body: bytes | None = None) -> tuple[int, dict]:
    """A raw HTTP exchange with the server (no litellm): status and JSON body."""
    base = server.url.removesuffix("/v1")
    request = urllib.request.Request(base + path, data=body, method="POST" if body else "GET")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


# -- plain completions ---------------------------------------------------------------------


async def test_plain_text_completion(server: OpenAIServer) -> None:
    server.push(Reply(content="it is noon"))
    response = await complete(server)

    assert response.choices[0].message.content == "it is noon"
    assert response.choices[0].message.role == "assistant"
    assert response.choices[0].finish_reason == "stop"
    assert response.model == "loom-test"  # echoed from the request
    # default counts: words of the prompt (4) and of the answer (3)
    assert response.usage.prompt_tokens == 4
    assert response.usage.completion_tokens == 3
    assert response.usage.total_tokens == 7
    assert response._hidden_params["api_base"] == server.url
    assert response._hidden_params["custom_llm_provider"] == "openai"

    assert len(server.requests) == 1
    assert server.requests[0]["model"] == "loom-test"
    assert server.requests[0]["messages"] == MESSAGES


async def test_scripted_token_counts(server: OpenAIServer) -> None:
    server.push(Reply(content="x", prompt_tokens=120, completion_tokens=30))
    response = await complete(server)
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (120, 30)
    assert response.usage.total_tokens == 150


async def test_replies_are_fifo_then_default() -> None:
    with OpenAIServer(replies=[Reply(content="one")], default=Reply(content="fallback")) as srv:
        srv.push(Reply(content="two"))
        answers = [(await complete(srv)).choices[0].message.content for _ in range(3)]
    assert answers == ["one", "two", "fallback"]


async def test_default_reply_is_ok(server: OpenAIServer) -> None:
    response = await complete(server)
    assert response.choices[0].message.content == "ok"


async def test_path_without_v1_prefix(server: OpenAIServer) -> None:
    # litellm appends /chat/completions to api_base, so this hits /chat/completions
    response = await complete(server, api_base=server.url.removesuffix("/v1"))
    assert response.choices[0].message.content == "ok"


def test_completion_cost_is_not_mapped_for_the_test_model(server: OpenAIServer) -> None:
    response = litellm.completion(
        model=MODEL, api_base=server.url, api_key="test-key", messages=MESSAGES,
        model_info={"id": "test-openai-server"},  # as in complete()
    )  # fmt: skip
    # no price is known for "openai/loom-test": cost accounting must cope with this
    # (None, or 0.0 once a litellm Router has run in the same process)
    assert not response._hidden_params["response_cost"]
    try:
        cost = litellm.completion_cost(response)
    except litellm.exceptions.ModelNotMappedError:
        cost = None
    assert not cost


# -- streaming -----------------------------------------------------------------------------


async def test_streaming_text_arrives_in_several_chunks(server: OpenAIServer) -> None:
    server.push(Reply(content="the time is twelve o'clock"))
    stream = await complete(server, stream=True)
    chunks = [chunk async for chunk in stream]

    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert pieces == split_words("the time is twelve o'clock")
    assert "".join(pieces) == "the time is twelve o'clock"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert server.requests[0]["stream"] is True


async def test_streaming_reports_usage_when_asked(server: OpenAIServer) -> None:
    server.push(Reply(content="a b c d"))
    stream = await complete(server, stream=True, stream_options={"include_usage": True})
    usages = [chunk.usage async for chunk in stream if getattr(chunk, "usage", None)]

    assert usages, "no chunk carried usage"
    assert (usages[-1].prompt_tokens, usages[-1].completion_tokens) == (4, 4)
    assert usages[-1].total_tokens == 8
    assert server.requests[0]["stream_options"] == {"include_usage": True}


# -- tool calls ----------------------------------------------------------------------------


async def test_tool_calls(server: OpenAIServer) -> None:
    server.push(Reply(tool_calls=[{"name": "get_time", "arguments": {"tz": "UTC"}}]))
    response = await complete(server, tools=TOOLS)

    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    call = choice.message.tool_calls[0]
    assert call.id == "call_1"
    assert call.type == "function"
    assert call.function.name == "get_time"
    assert json.loads(call.function.arguments) == {"tz": "UTC"}
    assert server.requests[0]["tools"][0]["function"]["name"] == "get_time"


async def test_streamed_tool_calls_reassemble(server: OpenAIServer) -> None:
    server.push(
        Reply(
            tool_calls=[
                {"name": "get_time", "arguments": {"tz": "Europe/Amsterdam"}},
                {"name": "get_time", "arguments": {"tz": "UTC"}},
            ]
        )
    )
    stream = await complete(server, tools=TOOLS, stream=True)
    chunks = [chunk async for chunk in stream]
    message = litellm.stream_chunk_builder(chunks).choices[0].message

    assert [c.id for c in message.tool_calls] == ["call_1", "call_2"]
    assert [json.loads(c.function.arguments) for c in message.tool_calls] == [
        {"tz": "Europe/Amsterdam"},
        {"tz": "UTC"},
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


# -- failures ------------------------------------------------------------------------------


async def test_client_timeout_raises_litellm_timeout(server: OpenAIServer) -> None:
    server.push(Reply(content="late", delay=5))
    with pytest.raises(litellm.Timeout) as caught:
        await complete(server, timeout=0.5, num_retries=0)
    assert isinstance(caught.value, litellm.exceptions.Timeout)
    # the server kept serving while that handler slept
    assert (await complete(server)).choices[0].message.content == "ok"


def test_stop_cuts_a_sleeping_handler() -> None:
    srv = OpenAIServer(default=Reply(content="late", delay=30)).start()
    request = urllib.request.Request(
        srv.url + "/chat/completions",
        data=json.dumps({"model": "loom-test", "messages": MESSAGES}).encode(),
    )
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            urllib.request.urlopen(request, timeout=10)
        except OSError as error:  # RemoteDisconnected, ConnectionResetError, ...
            outcome.append(error)

    client = threading.Thread(target=call, daemon=True)
    client.start()
    deadline = time.monotonic() + 5
    while not srv.requests and time.monotonic() < deadline:
        time.sleep(0.005)  # until the handler is asleep on its delay
    started = time.monotonic()
    srv.stop()
    assert time.monotonic() - started < 1
    client.join(timeout=2)
    assert not client.is_alive(), "the client still waits for the stopped server"
    assert outcome, "the client got an answer from a stopped server"


async def test_http_500_without_retries(server: OpenAIServer) -> None:
    server.push(Reply(status=500, error_message="the model fell over"))
    with pytest.raises(litellm.InternalServerError) as caught:
        await complete(server, num_retries=0)
    assert caught.value.status_code == 500
    assert "the model fell over" in str(caught.value)
    assert len(server.requests) == 1


async def test_http_500_is_retried_by_num_retries(server: OpenAIServer) -> None:
    # without num_retries the OpenAI SDK retries twice (3 requests, ~1.3 s of backoff)
    server.push(Reply(status=500), Reply(status=500), Reply(content="third time"))
    with pytest.raises(litellm.InternalServerError):
        await complete(server, num_retries=1)
    assert len(server.requests) == 2


async def test_invalid_api_key_is_not_retried(server: OpenAIServer) -> None:
    server.default = Reply(status=401, error_message="Incorrect API key provided")
    with pytest.raises(litellm.AuthenticationError) as caught:
        await complete(server)  # default retries: a 401 is final
    assert caught.value.status_code == 401
    assert len(server.requests) == 1


async def test_rate_limit(server: OpenAIServer) -> None:
    server.push(Reply(status=429, error_message="slow down"))
    with pytest.raises(litellm.RateLimitError):
        await complete(server, num_retries=0)


async def test_stopped_server_refuses_connections() -> None:
    srv = OpenAIServer().start()
    srv.stop()
    # litellm maps the OpenAI SDK's APIConnectionError (aiohttp ClientConnectorError,
    # ConnectionRefusedError underneath) to InternalServerError, status 500
    with pytest.raises(litellm.InternalServerError) as caught:
        await complete(srv, num_retries=0)
    assert "Connection error" in str(caught.value)
    assert srv.requests == []


# -- raw HTTP ------------------------------------------------------------------------------


def test_malformed_json_is_a_400(server: OpenAIServer) -> None:
    status, body = http(server, "/v1/chat/completions", b"{not json")
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    assert "malformed JSON" in body["error"]["message"]
    assert server.requests == []


def test_models_endpoint(server: OpenAIServer) -> None:
    status, body = http(server, "/v1/models")
    assert status == 200
    assert body["object"] == "list"
    assert [model["id"] for model in body["data"]] == ["loom-test"]


def test_unknown_path_is_a_404(server: OpenAIServer) -> None:
    status, body = http(server, "/v1/embeddings", b"{}")
    assert status == 404
    assert "error" in body


def test_raw_stream_wire_format(server: OpenAIServer) -> None:
    server.push(Reply(content="hi there"))
    body = {"model": "m", "messages": MESSAGES, "stream": True}
    body["stream_options"] = {"include_usage": True}
    request = urllib.request.Request(
        server.url + "/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Content-Type"] == "text/event-stream"
        events = response.read().decode().split("\n\n")

    assert events[-2:] == ["data: [DONE]", ""]
    chunks = [json.loads(event.removeprefix("data: ")) for event in events[:-2]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}
