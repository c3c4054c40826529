"""LLM providers built from ``loom.toml``, calling models through litellm.

>>> llm = ctx.llm("deepseek")                                    # doctest: +SKIP
>>> answer = await llm.complete("Summarise AAPL's last week in one line.")
>>> answer.text, answer.usage.output_tokens, answer.usage.cost_usd
>>> plan = await llm.structured(messages, response_model=Plan)   # a validated Plan
>>> async for piece in llm.stream("Tell me a story"):
...     print(piece, end="")

:class:`LLMProvider` is the one interface (:func:`~loom_kernel.capabilities.llm.provider_for`
builds the right one for a name); a
:class:`~loom_kernel.capabilities.llm.model.ModelProvider` calls one ``[llm.<name>]``
model, a :class:`~loom_kernel.capabilities.llm.router.RouterProvider` composes several
behind litellm's ``Router`` (``ctx.llm("router")``). A provider never answers in place
of the model: a failure raises :class:`~loom_kernel.errors.LLMError` (or
:class:`~loom_kernel.errors.LLMTimeout`), and the caller decides what to do.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from ...errors import LLMError, LLMTimeout, LoomError
from ...protocol import reserved
from ...protocol.spans import Span
from ...stats import LatencyRecorder
from ...tracing.tracer import NO_TRACER, Tracer
from ..tools import ToolInfo
from ._litellm import connection_failed, cost_of, import_litellm
from .content import input_attributes, output_attributes
from .types import LLMResponse, LLMStatistics, ToolCall, Usage, wire_name

__all__ = ["ROUTER", "LLMCaller", "LLMProvider", "LLMStream", "Messages"]

M = TypeVar("M", bound=BaseModel)
Messages = str | Sequence[dict[str, Any]]
#: ``ctx.llm(ROUTER)`` is the ``[router]`` section's provider.
ROUTER = "router"


@dataclass(frozen=True)
class LLMCaller:
    """Who calls a provider, and where its calls are reported.

    Attributes:
        agent: the calling agent's id (on spans).
        tracer: records a ``chat <model>`` span per call.
        report: ``report(topic, data)`` publishes each call's usage on the bus.
        list_tools: the bus's tools, for ``tools=["name", ...]``.
    """

    agent: str | None = None
    tracer: Tracer = NO_TRACER
    report: Callable[[str, dict[str, Any]], None] | None = None
    list_tools: Callable[[], Awaitable[list[ToolInfo]]] | None = None


class _HasLLM(Protocol):
    def llm(self, name: str) -> LLMProvider: ...


class LLMProvider(ABC):
    """A model, or a router over models, from ``loom.toml``; get one with ``ctx.llm(name)``.

    Subclasses say how a request reaches litellm (:meth:`acompletion`) and how to
    describe themselves in errors; this class does the rest: messages, tools, structured
    output, spans, usage reports and statistics.
    """

    def __init__(self, name: str, model: str, *, caller: LLMCaller | None = None):
        self.name = name
        self.model = model
        self.caller = caller or LLMCaller()
        self._wire_names: dict[str, str] = {}
        self.calls = self.errors = self.input_tokens = self.output_tokens = 0
        self.cost_usd = 0.0
        self.last_error: str | None = None
        self.latency = LatencyRecorder()

    @classmethod
    def from_name(cls, ctx: _HasLLM, name: str) -> LLMProvider:
        """The agent's provider ``[llm.<name>]`` (or ``router``): the same as ``ctx.llm(name)``."""
        return ctx.llm(name)

    # -- what a provider says about itself -------------------------------------------

    @property
    @abstractmethod
    def section(self) -> str:
        """Its ``loom.toml`` section, for messages: ``[llm.deepseek]``, ``[router]``."""

    @property
    @abstractmethod
    def json_mode(self) -> bool:
        """Whether structured calls ask for ``response_format = json_object``."""

    @abstractmethod
    def check_keys(self) -> None:
        """Raise the :class:`LLMError` that says which key to export, if one is missing."""

    @abstractmethod
    async def acompletion(
        self, request: list[dict[str, Any]], params: dict[str, Any], *, stream: bool = False
    ) -> Any:
        """litellm's answer to one request (raw exceptions: :meth:`_translate` maps them)."""

    @abstractmethod
    def _where(self) -> str:
        """Where requests go, for error messages."""

    @abstractmethod
    def _timeout(self) -> float: ...

    @abstractmethod
    def _key_hint(self) -> str: ...

    @abstractmethod
    def _span_attributes(self, params: dict[str, Any]) -> dict[str, Any]:
        """OpenTelemetry GenAI attributes of a call (system, request model, settings)."""

    # -- calls -----------------------------------------------------------------------

    async def complete(
        self,
        messages: Messages,
        *,
        system: str | None = None,
        tools: Sequence[str | ToolInfo | dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        **params: Any,
    ) -> LLMResponse:
        """One completion; ``params`` (temperature, max_tokens...) override ``loom.toml``.

        ``tools`` are Loom tool names (their schemas are looked up on the bus),
        :class:`ToolInfo` records, or OpenAI tool dicts.

        Raises:
            LLMError: missing key, server unreachable or refusing, bad request.
            LLMTimeout: no answer within ``timeout_sec``.
        """
        request = self._messages(messages, system)
        if tools:
            params["tools"] = await self._tool_specs(tools)
            if tool_choice is not None:
                params["tool_choice"] = tool_choice
        return await self._call(request, params)

    async def structured(
        self,
        messages: Messages,
        response_model: type[M],
        *,
        system: str | None = None,
        **params: Any,
    ) -> M:
        """A completion validated as ``response_model`` (a pydantic model).

        The schema goes in the system message (and ``response_format`` asks for JSON
        when ``json_mode`` is on); an invalid answer gets one repair round with the
        validation error, then :class:`LLMError`.
        """
        response = await self.complete_structured(messages, response_model, system=system, **params)
        return response.parsed

    async def complete_structured(
        self,
        messages: Messages,
        response_model: type[M],
        *,
        system: str | None = None,
        **params: Any,
    ) -> LLMResponse:
        """Like :meth:`structured`, returning the whole :class:`LLMResponse` (``.parsed``)."""
        schema = json.dumps(response_model.model_json_schema())
        instruction = (
            "Reply with one JSON object that validates against this JSON schema, and nothing "
            f"else (no prose, no code fences):\n{schema}"
        )
        request = self._messages(messages, f"{system}\n\n{instruction}" if system else instruction)
        if self.json_mode:
            params.setdefault("response_format", {"type": "json_object"})
        response = await self._call(request, dict(params))
        try:
            return _with_parsed(response, response_model)
        except (ValidationError, ValueError) as first:
            problem = _summarise(first)
        repair = [
            *request,
            {"role": "assistant", "content": response.text},
            {
                "role": "user",
                "content": f"That reply is not valid: {problem}. Reply again with only the "
                "corrected JSON object.",
            },
        ]
        retry = await self._call(repair, dict(params))
        try:
            return _with_parsed(retry, response_model)
        except (ValidationError, ValueError) as second:
            self.errors += 1
            self.last_error = f"invalid JSON twice: {_summarise(second)}"
            raise LLMError(
                f"{self.section} answered twice without a valid {response_model.__name__} "
                f"({_summarise(second)}); last answer: {retry.text[:300]!r}"
            ) from None

    def stream(self, messages: Messages, *, system: str | None = None, **params: Any) -> LLMStream:
        """Stream a completion: ``async for piece in llm.stream(...)`` yields text pieces;
        afterwards ``stream.response`` holds the whole :class:`LLMResponse`."""
        return LLMStream(self, self._messages(messages, system), params)

    # -- plumbing --------------------------------------------------------------------

    def _messages(self, messages: Messages, system: str | None) -> list[dict[str, Any]]:
        if isinstance(messages, str):
            request = [{"role": "user", "content": messages}]
        elif isinstance(messages, Sequence) and all(isinstance(m, dict) for m in messages):
            request = [dict(m) for m in messages]
        else:
            raise LLMError(
                "messages must be a str or a list of {'role': ..., 'content': ...} dicts, got "
                f"{type(messages).__name__}"
            )
        if not request:
            raise LLMError("messages is empty: pass a prompt str or at least one message")
        if system:
            request.insert(0, {"role": "system", "content": system})
        return request

    async def _call(self, request: list[dict[str, Any]], params: dict[str, Any]) -> LLMResponse:
        try:
            self.check_keys()  # a missing key fails at once, before importing anything
        except LLMError as exc:
            self.calls += 1
            self.failed(exc, time.perf_counter())
            raise
        await import_litellm()  # seconds the first time: not the model's latency
        span = self.start_span(request, params)
        started = time.perf_counter()
        self.calls += 1
        try:
            try:
                raw = await self.acompletion(request, params)
            except LLMError:
                raise
            except Exception as exc:
                raise self.translate(exc, params.get("timeout")) from None
        except LLMError as exc:
            self.failed(exc, started)
            self.end_span(span, error=exc)
            raise
        response = self._response(raw, time.perf_counter() - started)
        self.record(response)
        self.end_span(span, response=response)
        return response

    def start_span(self, request: list[dict[str, Any]], params: dict[str, Any]) -> Span | None:
        """The client span of one call, with OpenTelemetry GenAI attributes."""
        tracer = self.caller.tracer
        if not tracer.enabled:
            return None
        attributes = self._span_attributes(params)
        attributes["loom.llm.provider"] = self.name
        span = tracer.start_span(
            f"chat {self.model}", "client", agent=self.caller.agent, attributes=attributes
        )
        if tracer.capture_content:
            for key, value in input_attributes(request).items():
                span.set_attribute(key, value)
        return span

    def end_span(
        self,
        span: Span | None,
        *,
        response: LLMResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        """End a call's span with the response's usage, or mark it failed with ``error``."""
        if span is None:
            return
        if response is not None:
            usage = response.usage
            span.set_attribute("gen_ai.response.model", response.model)
            span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
            span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
            span.set_attribute("gen_ai.response.finish_reasons", [response.finish_reason or ""])
            span.set_attribute("loom.llm.latency_ms", round(usage.latency_s * 1000, 3))
            if usage.cost_usd is not None:
                span.set_attribute("loom.llm.cost_usd", usage.cost_usd)
            if self.caller.tracer.capture_content:
                for key, value in output_attributes(response).items():
                    span.set_attribute(key, value)
        if error is not None:
            span.fail(error)
        self.caller.tracer.end(span)

    def translate(self, exc: Exception, timeout: float | None = None) -> LLMError:
        """litellm's exception as an :class:`LLMError` that says what to check."""
        kind = type(exc).__name__
        where = self._where()
        text = " ".join(str(exc).split())[:400]
        if "Timeout" in kind:
            return LLMTimeout(
                f"{self.section} {self.model} did not answer within "
                f"{timeout if timeout is not None else self._timeout():g} s "
                f"({where}): raise timeout_sec if the model is just slow"
            )
        if "AuthenticationError" in kind:
            return LLMError(
                f"{self.section} {self.model} rejected the API key ({where}): check "
                f"{self._key_hint()}"
            )
        if connection_failed(exc):
            return LLMError(
                f"{self.section} cannot reach {self.model} ({where}): is the server up? ({text})"
            )
        status = getattr(exc, "status_code", None)
        code = f" HTTP {status}" if status else ""
        return LLMError(f"{self.section} {self.model} failed{code} ({where}): {kind}: {text}")

    async def _tool_specs(
        self, tools: Sequence[str | ToolInfo | dict[str, Any]]
    ) -> list[dict[str, Any]]:
        specs: list[dict[str, Any]] = []
        listing: dict[str, ToolInfo] | None = None
        for tool in tools:
            if isinstance(tool, dict):
                specs.append(tool)
                continue
            if isinstance(tool, str):
                if listing is None:
                    listing = await self._listing()
                if tool not in listing:
                    raise LLMError(
                        f"tools=[{tool!r}]: no such tool on the bus (known: "
                        f"{', '.join(sorted(listing)) or 'none'})"
                    )
                tool = listing[tool]
            wire = wire_name(tool.name)
            self._wire_names[wire] = tool.name
            specs.append(
                {
                    "type": "function",
                    "function": {
                        "name": wire,
                        "description": tool.description[:1000],
                        "parameters": tool.input_schema,
                    },
                }
            )
        return specs

    async def _listing(self) -> dict[str, ToolInfo]:
        if self.caller.list_tools is None:
            raise LLMError("tools given by name need a provider made with ctx.llm(name)")
        found: dict[str, ToolInfo] = {}
        for info in await self.caller.list_tools():
            found[info.name] = info
            for alias in info.aliases:
                found.setdefault(alias, info)
        return found

    def _response(self, raw: Any, latency: float) -> LLMResponse:
        choice = raw.choices[0]
        message = choice.message
        calls = [self._tool_call(call) for call in (getattr(message, "tool_calls", None) or [])]
        usage = getattr(raw, "usage", None)
        return LLMResponse(
            text=message.content or "",
            tool_calls=calls,
            usage=Usage(
                input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                cost_usd=cost_of(raw),
                latency_s=latency,
            ),
            model=str(getattr(raw, "model", None) or self.model),
            provider=self.name,
            finish_reason=getattr(choice, "finish_reason", None),
            raw=raw,
        )

    def _tool_call(self, call: Any) -> ToolCall:
        function = call.function
        try:
            arguments = json.loads(function.arguments or "{}")
        except json.JSONDecodeError:
            arguments = {"_raw": function.arguments}
        name = self._wire_names.get(function.name, function.name)
        return ToolCall(id=str(call.id), name=name, arguments=arguments)

    # -- accounting ------------------------------------------------------------------

    def record(self, response: LLMResponse) -> None:
        """Count a successful call and report its usage on the bus."""
        usage = response.usage
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cost_usd += usage.cost_usd or 0.0
        self.latency.record(usage.latency_s)
        self._report(
            {
                "ok": True,
                "model": response.model,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost_usd": usage.cost_usd,
                "latency_ms": round(usage.latency_s * 1000, 3),
            }
        )

    def failed(self, exc: LLMError, started: float) -> None:
        """Count a failed call and report it on the bus."""
        self.errors += 1
        self.last_error = str(exc)
        latency = time.perf_counter() - started
        self._report(
            {
                "ok": False,
                "model": self.model,
                "error": str(exc),
                "latency_ms": round(latency * 1000, 3),
            }
        )

    def _report(self, data: dict[str, Any]) -> None:
        report = self.caller.report
        if report is None:
            return
        with contextlib.suppress(LoomError):  # the bus is closing; the call is what matters
            report(reserved.llm_usage(self.name), data)

    def statistics(self) -> LLMStatistics:
        """Calls, errors, tokens, cost and latency of this model so far."""
        p50, p99 = self.latency.percentiles_ms(50, 99)
        return LLMStatistics(
            name=self.name,
            model=self.model,
            calls=self.calls,
            errors=self.errors,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=round(self.cost_usd, 6),
            latency_p50_ms=p50,
            latency_p99_ms=p99,
            last_error=self.last_error,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self.model}>"


class LLMStream:
    """A streaming completion: iterate for text pieces, then read :attr:`response`."""

    def __init__(
        self, provider: LLMProvider, request: list[dict[str, Any]], params: dict[str, Any]
    ):
        self._provider = provider
        self._request = request
        self._params = params
        self.response: LLMResponse | None = None

    async def __aiter__(self) -> AsyncIterator[str]:
        provider = self._provider
        params = {**self._params, "stream_options": {"include_usage": True}}
        provider.check_keys()
        await import_litellm()
        span = provider.start_span(self._request, params)
        started = time.perf_counter()
        provider.calls += 1
        pieces: list[str] = []
        usage: Any = None
        model = provider.model
        finish: str | None = None
        try:
            chunks = await provider.acompletion(self._request, params, stream=True)
            async for chunk in chunks:
                usage = getattr(chunk, "usage", None) or usage
                model = getattr(chunk, "model", None) or model
                for choice in chunk.choices or []:
                    finish = getattr(choice, "finish_reason", None) or finish
                    piece = getattr(choice.delta, "content", None)
                    if piece:
                        pieces.append(piece)
                        yield piece
        except LLMError as exc:
            provider.failed(exc, started)
            provider.end_span(span, error=exc)
            raise
        except GeneratorExit:  # the caller stopped reading: the call still happened
            if span is not None:
                span.set_attribute("loom.llm.abandoned", True)
                span.set_attribute("loom.llm.pieces_received", len(pieces))
            provider.end_span(span)
            raise
        except Exception as exc:
            error = provider.translate(exc, self._params.get("timeout"))
            provider.failed(error, started)
            provider.end_span(span, error=error)
            raise error from None
        self.response = LLMResponse(
            text="".join(pieces),
            tool_calls=[],
            usage=Usage(
                input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                cost_usd=None,
                latency_s=time.perf_counter() - started,
            ),
            model=str(model),
            provider=provider.name,
            finish_reason=finish,
        )
        provider.record(self.response)
        provider.end_span(span, response=self.response)


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


def _with_parsed(response: LLMResponse, model: type[M]) -> LLMResponse:
    text = _FENCE.sub("", response.text.strip()).strip()
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object in the reply")
    parsed = model.model_validate_json(text[start : end + 1])
    return LLMResponse(**{**response.__dict__, "parsed": parsed})


def _summarise(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        parts = []
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error["loc"]) or "the object"
            parts.append(f"{where}: {error['msg']}")
        return "; ".join(parts)
    return str(exc)
