"""Which provider a name means: ``[llm.<name>]``, or ``[router]`` for ``"router"``."""

from __future__ import annotations

from ...config import LoomConfig
from ...errors import LLMError
from .model import ModelProvider
from .provider import ROUTER, LLMCaller, LLMProvider
from .router import RouterProvider

__all__ = ["provider_for"]


def provider_for(config: LoomConfig, name: str, *, caller: LLMCaller | None = None) -> LLMProvider:
    """The provider ``[llm.<name>]`` of ``config``, or ``[router]`` for ``"router"``.

    Raises:
        LLMError: no such entry (the message shows what to add), or an empty router.
    """
    if name == ROUTER:
        return RouterProvider(config.router, config.llm, caller=caller)
    if name not in config.llm:
        declared = ", ".join(config.llm) or "none"
        raise LLMError(
            f"no [llm.{name}] in {config.path or 'loom.toml'} (declared: {declared}): add "
            f'[llm.{name}] with model = "deepseek/deepseek-chat" (see docs/llm.md)'
        )
    return ModelProvider(name, config.llm[name], caller=caller)
