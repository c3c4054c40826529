"""LLM providers built from ``loom.toml``, calling models through litellm.

>>> llm = ctx.llm("deepseek")                                    # doctest: +SKIP
>>> answer = await llm.complete("Summarise AAPL's last week in one line.")
>>> answer.text, answer.usage.output_tokens, answer.usage.cost_usd
>>> plan = await llm.structured(messages, response_model=Plan)   # a validated Plan
>>> async for piece in llm.stream("Tell me a story"):
...     print(piece, end="")

``[llm.<name>]`` gives the model and how to reach it; ``[router]`` builds a litellm
``Router`` over several entries, used as ``ctx.llm("router")``. A provider never
answers in place of the model: a failure raises :class:`~loom_kernel.errors.LLMError`
(or :class:`~loom_kernel.errors.LLMTimeout`), and the caller decides what to do.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sys
import time
import warnings
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError

from .config import LLMConfig, LoomConfig
from .errors import LLMError, LLMTimeout, LoomError
from .spans import Span
from .stats import LatencyRecorder
from .tools import ToolInfo

if TYPE_CHECKING:
    from .context import Context

__all__ = ["LLMProvider", "LLMResponse", "LLMStatistics", "LLMStream", "ToolCall", "Usage"]

M = TypeVar("M", bound=BaseModel)
Messages = str | Sequence[dict[str, Any]]
ROUTER = "router"
_NO_KEY = "no-key-needed"  # local OpenAI-compatible servers want a key, any key


def _litellm() -> Any:
    """Import litellm without letting it reach the internet or send telemetry."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    # litellm's own pydantic and deprecation warnings say nothing to a Loom user (some
    # come from its lazy imports at the first call, hence process-wide filters).
    warnings.filterwarnings("ignore", module=r"litellm(\.|$)")
    warnings.filterwarnings("ignore", message=r".*`ReadOnly` qualifier", category=UserWarning)
    import litellm

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    litellm.turn_off_message_logging = True
    return litellm


async def _import_litellm() -> None:
    """The first import of litellm takes seconds: do it in a thread, not on the event
    loop that runs every agent of the process."""
    if "litellm" not in sys.modules:
        await asyncio.to_thread(_litellm)


@dataclass(frozen=True)
class Usage:
    """Tokens, cost and time of one call (cost is None when litellm has no price)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0

    @property
    def total_tokens(self) -> int:
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
                        "name": _wire_name(call.name),
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


class LLMProvider:
    """A model (or a router over models) from ``loom.toml``; create with ``ctx.llm(name)``."""

    def __init__(self, name: str, config: LoomConfig, *, ctx: Context | None = None):
        if name == ROUTER:
            if not config.router.models:
                raise LLMError(
                    '[router] has no models: add `models = ["deepseek", ...]` naming [llm.*] '
                    "entries to route between"
                )
            self.model = "router(" + ", ".join(config.router.models) + ")"
        elif name not in config.llm:
            declared = ", ".join(config.llm) or "none"
            raise LLMError(
                f"no [llm.{name}] in {config.path or 'loom.toml'} (declared: {declared}): add "
                f'[llm.{name}] with model = "deepseek/deepseek-chat" (see docs/llm.md)'
            )
        else:
            self.model = config.llm[name].model
        self.name = name
        self.config = config
        self.ctx = ctx
        self._router: Any = None
        self._wire_names: dict[str, str] = {}
        self.calls = self.errors = self.input_tokens = self.output_tokens = 0
        self.cost_usd = 0.0
        self.last_error: str | None = None
        self.latency = LatencyRecorder()

    @property
    def _section(self) -> str:
        return "[router]" if self.name == ROUTER else f"[llm.{self.name}]"

    @classmethod
    def from_name(cls, ctx: Context, name: str) -> LLMProvider:
        """The provider ``[llm.<name>]`` (or ``router``) of the context's ``loom.toml``."""
        return cls(name, ctx.runtime.config, ctx=ctx)

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
        if self._settings_json_mode():
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
                f"{self._section} answered twice without a valid {response_model.__name__} "
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

    def _check_keys(self) -> None:
        """Raise the missing-key error now (``_params`` reads the key variables)."""
        names = (
            [*self.config.router.models, *self.config.router.fallbacks]
            if self.name == ROUTER
            else [self.name]
        )
        for name in names:
            settings = self.config.llm[name]
            if settings.api_key_env and not os.environ.get(settings.api_key_env):
                self._params(name)  # raises the LLMError that says what to export

    def _settings_json_mode(self) -> bool:
        if self.name == ROUTER:
            router = self.config.router
            return all(self.config.llm[n].json_mode for n in [*router.models, *router.fallbacks])
        return self.config.llm[self.name].json_mode

    def _params(self, name: str) -> dict[str, Any]:
        """litellm arguments of one ``[llm.<name>]`` entry (the key resolved now)."""
        settings: LLMConfig = self.config.llm[name]
        params: dict[str, Any] = {"model": settings.model, **settings.extra_params}
        if settings.api_base:
            params["api_base"] = settings.api_base
        if settings.temperature is not None:
            params["temperature"] = settings.temperature
        if settings.max_tokens is not None:
            params["max_tokens"] = settings.max_tokens
        key = settings.api_key
        if settings.api_key_env:
            key = os.environ.get(settings.api_key_env)
            if not key:
                raise LLMError(
                    f"[llm.{name}] reads its key from ${settings.api_key_env}, which is not set: "
                    f"`export {settings.api_key_env}=...` before starting (or put api_key in "
                    "loom.toml)"
                )
        if key is None and settings.api_base and not _provider_key_set(settings.model):
            key = _NO_KEY
        if key is not None:
            params["api_key"] = key
        return params

    async def _call(self, request: list[dict[str, Any]], params: dict[str, Any]) -> LLMResponse:
        try:
            self._check_keys()  # a missing key fails at once, before importing anything
        except LLMError as exc:
            self.calls += 1
            self._failed(exc, time.perf_counter())
            raise
        await _import_litellm()  # seconds the first time: not the model's latency
        span = self._start_span(request, params)
        started = time.perf_counter()
        self.calls += 1
        try:
            raw = await self._acompletion(request, params)
        except LLMError as exc:
            self._failed(exc, started)
            self._end_span(span, error=exc)
            raise
        response = self._response(raw, time.perf_counter() - started)
        self._record(response)
        self._end_span(span, response=response)
        return response

    def _start_span(self, request: list[dict[str, Any]], params: dict[str, Any]) -> Span | None:
        """The client span of one call, with OpenTelemetry GenAI attributes."""
        if self.ctx is None or not self.ctx.runtime.tracing.enabled:
            return None
        tracing = self.ctx.runtime.tracing
        if self.name == ROUTER:
            model = self.model
            first = self.config.llm[self.config.router.models[0]].model
            system = first.split("/", 1)[0] if "/" in first else "openai"
        else:
            model = self.config.llm[self.name].model
            system = model.split("/", 1)[0] if "/" in model else "openai"
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": system,
            "gen_ai.provider.name": system,
            "gen_ai.request.model": model,
            "loom.llm.provider": self.name,
        }
        settings = self.config.llm.get(self.name)
        for key, value in (
            (
                "gen_ai.request.temperature",
                params.get("temperature", settings and settings.temperature),
            ),
            (
                "gen_ai.request.max_tokens",
                params.get("max_tokens", settings and settings.max_tokens),
            ),
        ):
            if value is not None:
                attributes[key] = value
        span = tracing.start_span(
            f"chat {model}", "client", agent=self.ctx.agent_id, attributes=attributes
        )
        if tracing.capture_content:
            span.add_event("gen_ai.content.prompt", {"gen_ai.prompt": json.dumps(request)[:16000]})
        return span

    def _end_span(
        self,
        span: Span | None,
        *,
        response: LLMResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        if span is None or self.ctx is None:
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
            if self.ctx.runtime.tracing.capture_content:
                span.add_event(
                    "gen_ai.content.completion", {"gen_ai.completion": response.text[:16000]}
                )
        if error is not None:
            span.fail(error)
        self.ctx.runtime.tracing.end(span)

    async def _acompletion(
        self, request: list[dict[str, Any]], params: dict[str, Any], *, stream: bool = False
    ) -> Any:
        litellm = _litellm()
        try:
            if self.name == ROUTER:
                router = self._get_router(litellm)
                return await router.acompletion(
                    model=ROUTER, messages=request, stream=stream, **params
                )
            call = {**self._params(self.name), **params}
            settings = self.config.llm[self.name]
            return await litellm.acompletion(
                messages=request,
                stream=stream,
                timeout=params.get("timeout", settings.timeout_sec),
                num_retries=settings.num_retries,
                **{k: v for k, v in call.items() if k != "timeout"},
            )
        except LLMError:
            raise
        except Exception as exc:
            raise self._translate(exc, params.get("timeout")) from None

    def _get_router(self, litellm: Any) -> Any:
        if self._router is None:
            settings = self.config.router
            model_list = [
                {"model_name": ROUTER, "litellm_params": self._params(name)}
                for name in settings.models
            ] + [
                {"model_name": name, "litellm_params": self._params(name)}
                for name in settings.fallbacks
            ]
            self._router = litellm.Router(
                model_list=model_list,
                routing_strategy=settings.strategy,
                fallbacks=[{ROUTER: list(settings.fallbacks)}] if settings.fallbacks else [],
                num_retries=settings.num_retries,
                timeout=settings.timeout_sec,
            )
        return self._router

    def _translate(self, exc: Exception, timeout: float | None = None) -> LLMError:
        kind = type(exc).__name__
        where = self._where()
        text = " ".join(str(exc).split())[:400]
        if "Timeout" in kind:
            return LLMTimeout(
                f"{self._section} {self.model} did not answer within "
                f"{timeout if timeout is not None else self._timeout():g} s "
                f"({where}): raise timeout_sec if the model is just slow"
            )
        if "AuthenticationError" in kind:
            return LLMError(
                f"{self._section} {self.model} rejected the API key ({where}): check "
                f"{self._key_hint()}"
            )
        if _connection_failed(exc):
            return LLMError(
                f"{self._section} cannot reach {self.model} ({where}): is the server up? ({text})"
            )
        status = getattr(exc, "status_code", None)
        code = f" HTTP {status}" if status else ""
        return LLMError(f"{self._section} {self.model} failed{code} ({where}): {kind}: {text}")

    def _where(self) -> str:
        if self.name == ROUTER:
            router = self.config.router
            return (
                "router over "
                + ", ".join(router.models)
                + (f", fallbacks {', '.join(router.fallbacks)}" if router.fallbacks else "")
            )
        settings = self.config.llm[self.name]
        return f"api_base {settings.api_base}" if settings.api_base else "provider default endpoint"

    def _timeout(self) -> float:
        if self.name == ROUTER:
            return self.config.router.timeout_sec
        return self.config.llm[self.name].timeout_sec

    def _key_hint(self) -> str:
        settings = self.config.llm.get(self.name)
        if settings and settings.api_key_env:
            return f"${settings.api_key_env}"
        return f"api_key / api_key_env in {self._section}"

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
            wire = _wire_name(tool.name)
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
        if self.ctx is None:
            raise LLMError("tools given by name need a provider made with ctx.llm(name)")
        found: dict[str, ToolInfo] = {}
        for info in await self.ctx.runtime.actions.tools(self.ctx):
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
                cost_usd=_cost(raw),
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

    def _record(self, response: LLMResponse) -> None:
        usage = response.usage
        self.input_tokens += usage.input_tokens
        self.output_tokens += usage.output_tokens
        self.cost_usd += usage.cost_usd or 0.0
        self.latency.record(usage.latency_s)
        self._publish(
            {
                "ok": True,
                "model": response.model,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost_usd": usage.cost_usd,
                "latency_ms": round(usage.latency_s * 1000, 3),
            }
        )

    def _failed(self, exc: LLMError, started: float) -> None:
        self.errors += 1
        self.last_error = str(exc)
        latency = time.perf_counter() - started
        self._publish(
            {
                "ok": False,
                "model": self.model,
                "error": str(exc),
                "latency_ms": round(latency * 1000, 3),
            }
        )

    def _publish(self, data: dict[str, Any]) -> None:
        if self.ctx is None:
            return
        with contextlib.suppress(LoomError):  # the bus is closing; the call is what matters
            self.ctx._publish(f"loom.llm.{self.name}.usage", data, type="llm", count=False)

    def statistics(self) -> LLMStatistics:
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
        return f"<LLMProvider {self.name!r} {self.model}>"


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
        provider._check_keys()
        await _import_litellm()
        span = provider._start_span(self._request, params)
        started = time.perf_counter()
        provider.calls += 1
        pieces: list[str] = []
        usage: Any = None
        model = provider.model
        finish: str | None = None
        try:
            chunks = await provider._acompletion(self._request, params, stream=True)
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
            provider._failed(exc, started)
            provider._end_span(span, error=exc)
            raise
        except GeneratorExit:  # the caller stopped reading: the call still happened
            if span is not None:
                span.set_attribute("loom.llm.abandoned", True)
                span.set_attribute("loom.llm.pieces_received", len(pieces))
            provider._end_span(span)
            raise
        except Exception as exc:
            error = provider._translate(exc, self._params.get("timeout"))
            provider._failed(error, started)
            provider._end_span(span, error=error)
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
        provider._record(self.response)
        provider._end_span(span, response=self.response)


def _provider_key_set(model: str) -> bool:
    """True when the provider's own key variable (OPENAI_API_KEY...) is set."""
    try:
        return bool(_litellm().validate_environment(model).get("keys_in_environment"))
    except Exception:  # an unknown provider: no variable to look for
        return False


def _connection_failed(exc: BaseException) -> bool:
    """litellm reports a refused connection as InternalServerError("Connection error."):
    look down the cause chain for the network error."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        name = type(seen).__name__
        if name in ("APIConnectionError", "ConnectError", "ClientConnectorError") or isinstance(
            seen, ConnectionError
        ):
            return "Timeout" not in name
        seen = seen.__cause__ or seen.__context__
    return False


def _wire_name(name: str) -> str:
    # OpenAI function names allow [A-Za-z0-9_-] only: "time.now" -> "time__now"
    return name.replace(".", "__")


def _cost(raw: Any) -> float | None:
    hidden = getattr(raw, "_hidden_params", None) or {}
    cost = hidden.get("response_cost")
    if cost is not None:
        return float(cost)
    try:
        return float(_litellm().completion_cost(completion_response=raw))
    except Exception:  # no price known for this model (local servers): cost unknown
        return None


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
