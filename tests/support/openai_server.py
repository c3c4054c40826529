"""A real, local HTTP server that speaks the OpenAI chat-completions API, for tests.

LLM tests talk to it through litellm exactly as they would talk to a provider: over TCP,
with JSON bodies and Server-Sent Events, so the whole client stack (litellm, the OpenAI
SDK, httpx/aiohttp) is exercised. Only the answers are scripted, with :class:`Reply`.

Standard library only: a ``ThreadingHTTPServer`` in a daemon thread on ``127.0.0.1``.

    with OpenAIServer() as server:
        server.push(Reply(content="hello there"))
        await litellm.acompletion(model="openai/loom-test", api_base=server.url,
                                  api_key="test-key", messages=[...])
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["OpenAIServer", "Reply"]

CHAT_PATHS = {"/v1/chat/completions", "/chat/completions"}
MODELS_PATHS = {"/v1/models", "/models"}

# OpenAI's error ``type``/``code`` per status, so clients map them to the usual exceptions.
ERROR_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass
class Reply:
    """One scripted answer of the server to a chat-completions request.

    ``tool_calls`` items are ``{"name": ..., "arguments": {...}}``; the arguments are sent
    as a JSON string and every call gets an id ``call_<n>``. ``delay`` sleeps before
    answering (client timeouts); a non-200 ``status`` answers with an OpenAI error body.
    Token counts default to deterministic word counts (see :func:`count_prompt_tokens`).
    """

    content: str | None = None
    tool_calls: list[dict] | None = None
    delay: float = 0.0
    status: int = 200
    error_message: str = "scripted error"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class OpenAIServer:
    """A scripted OpenAI-compatible server on ``127.0.0.1`` and a free port.

    Replies are served FIFO from :meth:`push` (or ``replies``); when none is queued,
    ``default`` (``Reply(content="ok")`` unless given) answers. Every request body is
    kept in :attr:`requests`. Pass :attr:`url` to litellm as ``api_base``.
    """

    def __init__(
        self,
        replies: list[Reply] | None = None,
        default: Reply | None = None,
        model_name: str = "loom-test",
    ) -> None:
        self.model_name = model_name
        self.default = default if default is not None else Reply(content="ok")
        self.requests: list[dict] = []
        self._queue: deque[Reply] = deque(replies or [])
        self._lock = threading.Lock()
        self._call_ids = itertools.count(1)
        # set by stop(): wakes handlers sleeping on a ``delay`` so they end promptly
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _Httpd | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- scripting -------------------------------------------------------------------

    def push(self, *replies: Reply) -> None:
        """Queue ``replies``; each request takes the oldest one."""
        with self._lock:
            self._queue.extend(replies)

    def _next_reply(self) -> Reply:
        with self._lock:
            return self._queue.popleft() if self._queue else self.default

    def _record(self, body: dict) -> None:
        with self._lock:
            self.requests.append(body)

    def _next_call_id(self) -> str:
        with self._lock:
            return f"call_{next(self._call_ids)}"

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> OpenAIServer:
        """Bind a free port and serve in a daemon thread; returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("OpenAIServer already started")
        self._stopping.clear()
        self._httpd = _Httpd(("127.0.0.1", 0), _Handler, owner=self)
        port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"openai-server-{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, cut in-flight connections and close the listening socket.

        Does not wait for handler threads (they are daemons): a handler sleeping on a
        ``delay`` is woken and its connection closed, so the client sees a disconnect.
        """
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            _hard_close(conn)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _track(self, conn: socket.socket, active: bool) -> None:
        with self._lock:
            if active:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


class _Httpd(ThreadingHTTPServer):
    """The HTTP server, knowing its :class:`OpenAIServer`."""

    daemon_threads = True  # a sleeping handler must never keep stop() or the process alive
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type, owner: OpenAIServer) -> None:
        self.owner = owner
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that gave up (timeout) or a stop() cut the socket: expected, not a bug
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _hard_close(conn: socket.socket) -> None:
    # shutdown() (not just close()) makes a blocked read/write in the handler fail now
    with contextlib.suppress(OSError):  # already closed by the client: fine
        conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """One HTTP exchange; every response closes the connection.

    Closing after each response keeps ``stop()`` honest: no keep-alive connection in a
    client's pool can reach a handler thread of a stopped server.
    """

    protocol_version = "HTTP/1.1"
    server: _Httpd

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, active=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._track(self.connection, active=False)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    # -- routing ---------------------------------------------------------------------

    def do_GET(self) -> None:
        if self._path() in MODELS_PATHS:
            self._send_json(200, models_list(self.server.owner.model_name))
        else:
            self._send_error(404, f"no route for GET {self.path}")

    def do_POST(self) -> None:
        if self._path() not in CHAT_PATHS:
            self._read_body()
            self._send_error(404, f"no route for POST {self.path}")
            return
        try:
            body = json.loads(self._read_body() or b"null")
        except ValueError as exc:
            self._send_error(400, f"malformed JSON body: {exc}")
            return
        if not isinstance(body, dict):
            self._send_error(400, "the request body must be a JSON object")
            return
        self._chat(body)

    def _path(self) -> str:
        return self.path.split("?", 1)[0].rstrip("/")

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # -- chat completions ------------------------------------------------------------

    def _chat(self, body: dict) -> None:
        owner = self.server.owner
        owner._record(body)
        reply = owner._next_reply()
        if reply.delay and owner._stopping.wait(reply.delay):
            return  # stopped while sleeping: the connection is already cut
        if reply.status != 200:
            self._send_error(reply.status, reply.error_message)
            return
        completion = Completion.build(body, reply, owner._next_call_id, owner.model_name)
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._send_stream(completion.chunks(include_usage))
        else:
            self._send_json(200, completion.message_object())

    # -- writing ---------------------------------------------------------------------

    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def _send_error(self, status: int, message: str) -> None:
        self._send_json(status, error_body(status, message))

    def _send_stream(self, events: list[dict]) -> None:
        """Server-Sent Events in chunked transfer encoding, flushed one event at a time."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in events:
            self._write_chunk(f"data: {json.dumps(event)}\n\n".encode())
        self._write_chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        self.close_connection = True

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()  # so the client sees each event as it is produced


# -- payloads ----------------------------------------------------------------------------


def error_body(status: int, message: str) -> dict:
    """OpenAI's error JSON for an HTTP ``status``."""
    kind, code = ERROR_KINDS.get(status, ("server_error" if status >= 500 else "api_error", None))
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def models_list(model_name: str) -> dict:
    """The ``GET /v1/models`` answer: one model."""
    model = {"id": model_name, "object": "model", "created": 0, "owned_by": "loom-tests"}
    return {"object": "list", "data": [model]}


def count_prompt_tokens(body: dict) -> int:
    """Deterministic stand-in for tokenization: words over all message contents."""
    return sum(_count_words(message.get("content")) for message in body.get("messages") or [])


def _count_words(content: Any) -> int:
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):  # content parts: count the text ones
        return sum(_count_words(part.get("text")) for part in content if isinstance(part, dict))
    return 0


def split_words(text: str) -> list[str]:
    """``text`` in word-sized pieces (each keeps its trailing space); they join back."""
    return [piece for piece in re.findall(r"\S*\s*", text) if piece]


def split_fragments(text: str, size: int = 8) -> list[str]:
    """``text`` in pieces of ``size`` characters, as OpenAI streams tool-call arguments."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


@dataclass
class Completion:
    """The answer to one request, rendered either as one object or as stream chunks."""

    id: str
    created: int
    model: str
    content: str | None
    tool_calls: list[dict]  # wire form: {"id", "type", "function": {"name", "arguments"}}
    usage: dict

    @classmethod
    def build(
        cls, body: dict, reply: Reply, next_id: Callable[[], str], default_model: str
    ) -> Completion:
        tool_calls = [
            {
                "id": next_id(),
                "type": "function",
                "function": {"name": call["name"], "arguments": _arguments(call)},
            }
            for call in reply.tool_calls or []
        ]
        prompt = reply.prompt_tokens
        if prompt is None:
            prompt = count_prompt_tokens(body)
        completion = reply.completion_tokens
        if completion is None:
            completion = _count_words(reply.content) + sum(
                len(call["function"]["arguments"]) for call in tool_calls
            )
        return cls(
            id=f"chatcmpl-{uuid.uuid4().hex[:24]}",
            created=int(time.time()),
            model=body.get("model") or default_model,
            content=reply.content,
            tool_calls=tool_calls,
            usage={
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        )

    @property
    def finish_reason(self) -> str:
        return "tool_calls" if self.tool_calls else "stop"

    def _envelope(self, kind: str) -> dict:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}

    def message_object(self) -> dict:
        """The non-streaming ``chat.completion`` object."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        choice = {"index": 0, "message": message, "finish_reason": self.finish_reason}
        return {**self._envelope("chat.completion"), "choices": [choice], "usage": self.usage}

    def chunks(self, include_usage: bool) -> list[dict]:
        """The ``chat.completion.chunk`` events of a stream, in order (no ``[DONE]``)."""
        # OpenAI opens with the role; content is "" for text and null for tool calls only
        opening = "" if self.content is not None or not self.tool_calls else None
        deltas: list[dict] = [{"role": "assistant", "content": opening}]
        deltas += [{"content": piece} for piece in split_words(self.content or "")]
        for index, call in enumerate(self.tool_calls):
            deltas += _tool_call_deltas(index, call)
        events = [self._chunk(delta, None) for delta in deltas]
        events.append(self._chunk({}, self.finish_reason))
        if include_usage:
            # OpenAI: every chunk carries "usage": null, then one last chunk has no choices
            for event in events:
                event["usage"] = None
            events.append(
                {**self._envelope("chat.completion.chunk"), "choices": [], "usage": self.usage}
            )
        return events

    def _chunk(self, delta: dict, finish_reason: str | None) -> dict:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return {**self._envelope("chat.completion.chunk"), "choices": [choice]}


def _arguments(call: dict) -> str:
    arguments = call.get("arguments", {})
    return arguments if isinstance(arguments, str) else json.dumps(arguments)


def _tool_call_deltas(index: int, call: dict) -> list[dict]:
    """OpenAI's way: id, type and name first with empty arguments, then argument pieces."""
    function = call["function"]
    head = {
        "index": index,
        "id": call["id"],
        "type": "function",
        "function": {"name": function["name"], "arguments": ""},
    }
    pieces = [
        {"index": index, "function": {"arguments": piece}}
        for piece in split_fragments(function["arguments"])
    ]
    return [{"tool_calls": [head]}] + [{"tool_calls": [piece]} for piece in pieces]
