"""An LLM call's prompt and answer as span attributes, in OpenTelemetry's GenAI format.

With ``[tracing] capture_content = true`` the chat span carries ``gen_ai.input.messages``,
``gen_ai.system_instructions`` and ``gen_ai.output.messages``: JSON arrays of messages
whose ``parts`` are text, tool calls or tool results, as the GenAI semantic conventions
lay them out (backends such as Phoenix show them as the span's input and output). Each
text is cut at ``MAX_TEXT`` characters, so the JSON stays valid.
"""

from __future__ import annotations

import json
from typing import Any

from .types import LLMResponse

__all__ = ["MAX_TEXT", "input_attributes", "output_attributes"]

MAX_TEXT = 8000


def input_attributes(request: list[dict[str, Any]]) -> dict[str, str]:
    """``gen_ai.input.messages`` (and ``gen_ai.system_instructions``) of a request."""
    system = [m for m in request if m.get("role") == "system"]
    others = [m for m in request if m.get("role") != "system"]
    attributes = {"gen_ai.input.messages": _json([_message(m) for m in others])}
    if system:
        parts = [part for m in system for part in _parts(m)]
        attributes["gen_ai.system_instructions"] = _json(parts)
    return attributes


def output_attributes(response: LLMResponse) -> dict[str, str]:
    """``gen_ai.output.messages`` of an answer: its text and the tools it asked for."""
    parts: list[dict[str, Any]] = []
    if response.text:
        parts.append(_text(response.text))
    parts.extend(
        {"type": "tool_call", "id": call.id, "name": call.name, "arguments": call.arguments}
        for call in response.tool_calls
    )
    message = {"role": "assistant", "parts": parts, "finish_reason": response.finish_reason}
    return {"gen_ai.output.messages": _json([message])}


def _message(message: dict[str, Any]) -> dict[str, Any]:
    return {"role": message.get("role", "user"), "parts": _parts(message)}


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    content = message.get("content")
    if message.get("role") == "tool":
        return [{"type": "tool_call_response", "id": message.get("tool_call_id"),
                 "response": _cut(str(content))}]  # fmt: skip
    if isinstance(content, str) and content:
        parts.append(_text(content))
    elif isinstance(content, list):  # OpenAI's content parts
        parts.extend(
            _text(str(item.get("text", ""))) if isinstance(item, dict) else _text(str(item))
            for item in content
        )
    for call in message.get("tool_calls") or []:
        function = call.get("function", {}) if isinstance(call, dict) else {}
        parts.append(
            {
                "type": "tool_call",
                "id": call.get("id") if isinstance(call, dict) else None,
                "name": function.get("name"),
                "arguments": _cut(str(function.get("arguments", ""))),
            }
        )
    return parts


def _text(text: str) -> dict[str, str]:
    return {"type": "text", "content": _cut(text)}


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)
