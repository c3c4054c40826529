"""What Loom's spans say to other backends: the conventions they read.

Loom's own spans stay lean (what ``loom trace`` and the studio need); on the way to an
OTLP backend (Jaeger, Arize Phoenix, a collector) each span gets the attributes those
backends classify and display by:

- OpenTelemetry messaging conventions on publish and handler spans: ``messaging.system``
  (``loom``), ``messaging.operation.type`` (``send`` / ``process``),
  ``messaging.operation.name`` (``publish`` / ``process``);
- OpenTelemetry GenAI agent conventions on handler spans: ``gen_ai.agent.name`` and
  ``gen_ai.agent.id`` (the agent), ``gen_ai.operation.name`` ``invoke_agent``;
- OpenInference's span kind (``openinference.span.kind``: ``AGENT`` for handlers,
  ``TOOL`` for tool calls and tools served, ``LLM`` for model calls, ``CHAIN`` for the
  rest), and for LLM spans its model, token counts and, when ``capture_content`` is on,
  input and output (``input.value``, ``output.value``), which Phoenix shows;
- a fan-in's links as ``loom.links`` (backends that do not draw links still show them).

Names change on the way out too (:func:`export_name`), so that the spans of sibling
agents differ in a backend's list: Loom's ``handle market.price.AAPL`` of agent ``trend``
is exported as ``trend: process market.price.AAPL`` (the messaging convention's
``{operation} {destination}``, after the agent), a tool served by agent ``calc`` as
``calc: execute_tool add``, and a tool call as ``execute_tool add`` (the GenAI
convention). The store keeps the short names, with the agent in its own column.
"""

from __future__ import annotations

from typing import Any

from ..protocol import reserved
from ..protocol.spans import Span

__all__ = ["export_attributes", "export_name", "span_kind"]

_JSON = "application/json"


def span_kind(span: Span) -> str:
    """OpenInference's kind of a Loom span: AGENT, TOOL, LLM or CHAIN."""
    attributes = span.attributes
    operation = attributes.get("gen_ai.operation.name")
    if operation == "chat":
        return "LLM"
    destination = str(attributes.get("messaging.destination.name", ""))
    if operation == "execute_tool" or (
        "loom.handler" in attributes and destination.startswith(reserved.TOOL_PREFIX)
    ):
        return "TOOL"
    if "loom.handler" in attributes:
        return "AGENT"
    return "CHAIN"


def export_name(span: Span) -> str:
    """The span's name for other backends: the agent and operation in it (see above)."""
    attributes = span.attributes
    if "loom.handler" in attributes and span.agent:
        tool = reserved.tool_name(str(attributes.get("messaging.destination.name", "")))
        if tool is not None:
            return f"{span.agent}: execute_tool {tool}"
        destination = attributes.get("messaging.destination.name")
        if destination:
            return f"{span.agent}: process {destination}"
    if attributes.get("gen_ai.operation.name") == "execute_tool" and span.kind == "client":
        tool_name = attributes.get("gen_ai.tool.name")
        if tool_name:
            return f"execute_tool {tool_name}"
    return span.name


def export_attributes(span: Span) -> dict[str, Any]:
    """The span's attributes, with the conventions above added (never overwritten)."""
    attributes = dict(span.attributes)
    kind = span_kind(span)
    added: dict[str, Any] = {"openinference.span.kind": kind}
    if span.agent:
        added["loom.agent"] = span.agent
    if "messaging.destination.name" in attributes:
        added.update(_messaging(span.kind))
    if kind in ("AGENT", "TOOL") and "loom.handler" in attributes and span.agent:
        added.update(
            {
                "gen_ai.agent.name": span.agent,
                "gen_ai.agent.id": span.agent,
                "gen_ai.operation.name": "invoke_agent" if kind == "AGENT" else "execute_tool",
            }
        )
    if kind == "TOOL" and "gen_ai.tool.name" in attributes:
        added["tool.name"] = attributes["gen_ai.tool.name"]
    if kind == "LLM":
        added.update(_llm(attributes))
    if span.links:
        added["loom.links"] = [f"{trace_id}/{span_id}" for trace_id, span_id in span.links]
    return {**added, **attributes}


def _messaging(kind: str) -> dict[str, str]:
    if kind == "producer":
        return {
            "messaging.system": "loom",
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
        }
    return {
        "messaging.system": "loom",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
    }


def _llm(attributes: dict[str, Any]) -> dict[str, Any]:
    added: dict[str, Any] = {}
    model = attributes.get("gen_ai.response.model") or attributes.get("gen_ai.request.model")
    if model:
        added["llm.model_name"] = model
    if attributes.get("gen_ai.provider.name"):
        added["llm.provider"] = attributes["gen_ai.provider.name"]
    prompt = attributes.get("gen_ai.usage.input_tokens")
    completion = attributes.get("gen_ai.usage.output_tokens")
    if isinstance(prompt, int):
        added["llm.token_count.prompt"] = prompt
    if isinstance(completion, int):
        added["llm.token_count.completion"] = completion
    if isinstance(prompt, int) and isinstance(completion, int):
        added["llm.token_count.total"] = prompt + completion
    if "gen_ai.input.messages" in attributes:
        added["input.value"] = attributes["gen_ai.input.messages"]
        added["input.mime_type"] = _JSON
    if "gen_ai.output.messages" in attributes:
        added["output.value"] = attributes["gen_ai.output.messages"]
        added["output.mime_type"] = _JSON
    return added
