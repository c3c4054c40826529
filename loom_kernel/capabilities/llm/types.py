"""What an LLM call returns: the response, its tool calls, its usage and cost."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LLMResponse", "LLMStatistics", "ToolCall", "Usage", "wire_name"]


@dataclass(frozen=True)
class Usage:
    """Tokens, cost and time of one call (cost is None when litellm has no price)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0

    @property
    def total_tokens(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True)
class ToolCall:
    """A tool the model asked for: call it with ``await ctx.tool(call.name, call.arguments)``."""

    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class LLMResponse:
    """One completion.

    Attributes:
        text: the assistant's text ("" when it only called tools).
        tool_calls: tools it asked for, with Loom tool names.
        usage: tokens, cost and latency.
        model: the model that answered (for a router: the one it picked).
        provider: the ``[llm.*]`` entry (or ``router``) used.
        finish_reason: ``stop``, ``length``, ``tool_calls``...
        parsed: the validated ``response_model`` instance for structured calls.
    """

    text: str
    tool_calls: list[ToolCall]
    usage: Usage
    model: str
    provider: str
    finish_reason: str | None = None
    parsed: Any = None
    raw: Any = field(default=None, repr=False, compare=False)

    @property
    def message(self) -> dict[str, Any]:
        """The assistant message, to append to the conversation."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": wire_name(call.name),
                        "arguments": json.dumps(call.arguments),
                    },
                }
                for call in self.tool_calls
            ]
        return message


@dataclass(frozen=True)
class LLMStatistics:
    """What one provider has done for one agent."""

    name: str
    model: str
    calls: int
    errors: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_p50_ms: float
    latency_p99_ms: float
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def wire_name(name: str) -> str:
    """A Loom tool name as an OpenAI function name ([A-Za-z0-9_-] only):
    ``time.now`` → ``time__now``."""
    return name.replace(".", "__")
