"""A router over several models: the ``[router]`` section, as ``ctx.llm("router")``.

:class:`RouterProvider` composes one :class:`~.model.ModelProvider` per ``[llm.*]``
entry it names and hands them to litellm's ``Router``, which picks a model per call by
the ``[router] strategy``:

- ``simple``: random, weighted by each model's ``rpm``/``tpm`` when given;
- ``latency``: the model that answered fastest lately (litellm measures each call);
- ``cost``: the cheapest (litellm's price map, or ``input_cost_per_token`` /
  ``output_cost_per_token`` set on the ``[llm.*]`` entry, e.g. for a local server);
- ``usage``: the model with the most headroom under its ``tpm``/``rpm`` limits;
- ``least-busy``: the model with the fewest calls in flight.

``fallbacks`` are tried in order once every model of the pool failed.

litellm measures calls (latency, tokens, requests, calls in flight) through callbacks that
are process-wide, and it registers them for one ``Router`` per strategy at a time: the
first one built, until it is retired; a later ``Router`` picks without measurements
(``latency`` at random, ``usage`` over its limits). So the ``Router`` of a configuration
is built once per process and shared by every agent's provider (which also makes
``rpm``/``tpm`` limits hold for the whole process, not per agent); building the one of
another configuration (another runtime, another ``loom.toml``) retires the previous one,
which keeps answering its providers but is no longer measured.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from ...config import LLMConfig, RouterConfig
from ...errors import LLMError
from ._litellm import load_litellm
from .model import ModelProvider, gen_ai_system
from .provider import ROUTER, LLMCaller, LLMProvider

__all__ = ["STRATEGIES", "RouterProvider"]

#: ``[router] strategy`` → litellm's routing strategy.
STRATEGIES = {
    "simple": "simple-shuffle",
    "latency": "latency-based-routing",
    "cost": "cost-based-routing",
    "usage": "usage-based-routing-v2",
    "least-busy": "least-busy",
}

_SHORT = {litellm: loom for loom, litellm in STRATEGIES.items()}
_SHORT["usage-based-routing"] = "usage"
_shared_lock = threading.Lock()
_shared: tuple[str, Any] | None = None  # (configuration, its litellm Router)


def _shared_router(configuration: dict[str, Any], build: Callable[[], Any]) -> Any:
    """The process's litellm ``Router`` for ``configuration``, built if it is not the
    current one (the previous one is retired: see the module docstring)."""
    global _shared
    key = json.dumps(configuration, sort_keys=True, default=repr)
    with _shared_lock:
        if _shared is not None:
            current_key, current = _shared
            if current_key == key:
                return current
            _shared = None
            # gives litellm's measuring callbacks back, for the new one (older litellm: discard)
            retire = getattr(current, "retire", None) or getattr(current, "discard", None)
            if retire is not None:
                retire()
        router = build()
        _shared = (key, router)
        return router


class RouterProvider(LLMProvider):
    """Routes each call to one model of a pool (see the module docstring)."""

    def __init__(
        self,
        settings: RouterConfig,
        models: dict[str, LLMConfig],
        *,
        caller: LLMCaller | None = None,
    ):
        if not settings.models:
            raise LLMError(
                '[router] has no models: add `models = ["deepseek", ...]` naming [llm.*] '
                "entries to route between"
            )
        super().__init__(ROUTER, "router(" + ", ".join(settings.models) + ")", caller=caller)
        self.settings = settings
        self.pool = [ModelProvider(name, models[name]) for name in settings.models]
        self.fallbacks = [ModelProvider(name, models[name]) for name in settings.fallbacks]
        self._router: Any = None

    @property
    def section(self) -> str:
        return "[router]"

    @property
    def strategy(self) -> str:
        """litellm's name of the routing strategy in use."""
        return STRATEGIES.get(self.settings.strategy, self.settings.strategy)

    @property
    def strategy_name(self) -> str:
        """Loom's name of the strategy (``latency``...), however ``loom.toml`` spells it."""
        return _SHORT.get(self.strategy, self.strategy)

    @property
    def json_mode(self) -> bool:
        return all(member.json_mode for member in (*self.pool, *self.fallbacks))

    def check_keys(self) -> None:
        for member in (*self.pool, *self.fallbacks):
            member.check_keys()

    def router(self) -> Any:
        """The litellm ``Router`` (found or built on first use, keys read then), shared by
        every provider of the same configuration in the process."""
        if self._router is None:
            model_list = [
                {"model_name": ROUTER, "litellm_params": member.litellm_params()}
                for member in self.pool
            ] + [
                {"model_name": member.name, "litellm_params": member.litellm_params()}
                for member in self.fallbacks
            ]
            settings = self.settings
            configuration = {
                "model_list": model_list,
                "routing_strategy": self.strategy,
                "fallbacks": [{ROUTER: [m.name for m in self.fallbacks]}] if self.fallbacks else [],
                "num_retries": settings.num_retries,
                "timeout": settings.timeout_sec,
            }
            self._router = _shared_router(
                configuration, lambda: load_litellm().Router(**configuration)
            )
        return self._router

    async def acompletion(
        self, request: list[dict[str, Any]], params: dict[str, Any], *, stream: bool = False
    ) -> Any:
        return await self.router().acompletion(
            model=ROUTER, messages=request, stream=stream, **params
        )

    def _where(self) -> str:
        where = "router over " + ", ".join(m.name for m in self.pool)
        if self.fallbacks:
            where += ", fallbacks " + ", ".join(m.name for m in self.fallbacks)
        return where

    def _timeout(self) -> float:
        return self.settings.timeout_sec

    def _key_hint(self) -> str:
        return "the api_key / api_key_env of the [llm.*] entries it routes to"

    def _span_attributes(self, params: dict[str, Any]) -> dict[str, Any]:
        system = gen_ai_system(self.pool[0].model)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": system,
            "gen_ai.provider.name": system,
            "gen_ai.request.model": self.model,
            "loom.llm.strategy": self.strategy_name,
        }
        for key, name in (("temperature", "temperature"), ("max_tokens", "max_tokens")):
            if params.get(key) is not None:
                attributes[f"gen_ai.request.{name}"] = params[key]
        return attributes
