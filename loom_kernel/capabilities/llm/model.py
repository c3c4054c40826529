"""One model: an ``[llm.<name>]`` entry of ``loom.toml``, called through litellm."""

from __future__ import annotations

import os
from typing import Any

from ...config import LLMConfig
from ...errors import LLMError
from ._litellm import load_litellm, provider_key_set
from .provider import LLMCaller, LLMProvider

__all__ = ["ModelProvider", "gen_ai_system"]

_NO_KEY = "no-key-needed"  # local OpenAI-compatible servers want a key, any key


class ModelProvider(LLMProvider):
    """The model of one ``[llm.<name>]`` entry."""

    def __init__(self, name: str, settings: LLMConfig, *, caller: LLMCaller | None = None):
        super().__init__(name, settings.model, caller=caller)
        self.settings = settings

    @property
    def section(self) -> str:
        return f"[llm.{self.name}]"

    @property
    def json_mode(self) -> bool:
        return self.settings.json_mode

    def check_keys(self) -> None:
        if self.settings.api_key_env and not os.environ.get(self.settings.api_key_env):
            self.litellm_params()  # raises the LLMError that says what to export

    def litellm_params(self) -> dict[str, Any]:
        """litellm's arguments for this model (the key read from the environment now).

        Raises:
            LLMError: ``api_key_env`` names a variable that is not set.
        """
        settings = self.settings
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
                    f"[llm.{self.name}] reads its key from ${settings.api_key_env}, which is not "
                    f"set: `export {settings.api_key_env}=...` before starting (or put api_key in "
                    "loom.toml)"
                )
        if key is None and settings.api_base and not provider_key_set(settings.model):
            key = _NO_KEY
        if key is not None:
            params["api_key"] = key
        return params

    async def acompletion(
        self, request: list[dict[str, Any]], params: dict[str, Any], *, stream: bool = False
    ) -> Any:
        call = {**self.litellm_params(), **params}
        call.pop("timeout", None)
        # litellm's router strategies watch every call of the process; the cost one fails
        # (a logged traceback per call) on a call whose litellm_params have no model_info
        call.setdefault("model_info", {"id": f"loom.llm.{self.name}"})
        return await load_litellm().acompletion(
            messages=request,
            stream=stream,
            timeout=params.get("timeout", self.settings.timeout_sec),
            num_retries=self.settings.num_retries,
            **call,
        )

    def _where(self) -> str:
        base = self.settings.api_base
        return f"api_base {base}" if base else "provider default endpoint"

    def _timeout(self) -> float:
        return self.settings.timeout_sec

    def _key_hint(self) -> str:
        if self.settings.api_key_env:
            return f"${self.settings.api_key_env}"
        return f"api_key / api_key_env in {self.section}"

    def _span_attributes(self, params: dict[str, Any]) -> dict[str, Any]:
        system = gen_ai_system(self.model)
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": system,
            "gen_ai.provider.name": system,
            "gen_ai.request.model": self.model,
        }
        temperature = params.get("temperature", self.settings.temperature)
        max_tokens = params.get("max_tokens", self.settings.max_tokens)
        if temperature is not None:
            attributes["gen_ai.request.temperature"] = temperature
        if max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = max_tokens
        return attributes


def gen_ai_system(model: str) -> str:
    """The provider part of a litellm model name (``deepseek/deepseek-chat`` → ``deepseek``)."""
    return model.split("/", 1)[0] if "/" in model else "openai"
