"""litellm, imported offline and quietly, and what Loom reads from its answers."""

from __future__ import annotations

import asyncio
import os
import sys
import warnings
from typing import Any

from ...extras import require

__all__ = ["connection_failed", "cost_of", "import_litellm", "load_litellm", "provider_key_set"]


def load_litellm() -> Any:
    """The litellm module, imported without letting it reach the internet or send
    telemetry (``LITELLM_LOCAL_MODEL_COST_MAP``)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    # litellm's own pydantic and deprecation warnings say nothing to a Loom user (some
    # come from its lazy imports at the first call, hence process-wide filters).
    warnings.filterwarnings("ignore", module=r"litellm(\.|$)")
    warnings.filterwarnings("ignore", message=r".*`ReadOnly` qualifier", category=UserWarning)
    module = require("litellm", "LLM calls (ctx.llm, [llm.*] in loom.toml)")

    module.telemetry = False
    module.suppress_debug_info = True
    module.turn_off_message_logging = True
    return module


async def import_litellm() -> None:
    """The first import of litellm takes seconds: do it in a thread, not on the event
    loop that runs every agent of the process."""
    if "litellm" not in sys.modules:
        await asyncio.to_thread(load_litellm)


def provider_key_set(model: str) -> bool:
    """True when the provider's own key variable (OPENAI_API_KEY...) is set."""
    try:
        return bool(load_litellm().validate_environment(model).get("keys_in_environment"))
    except Exception:  # an unknown provider: no variable to look for
        return False


def connection_failed(exc: BaseException) -> bool:
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


def cost_of(raw: Any) -> float | None:
    """The cost litellm computed for a response, None when it has no price."""
    hidden = getattr(raw, "_hidden_params", None) or {}
    cost = hidden.get("response_cost")
    if cost is not None:
        return float(cost)
    try:
        return float(load_litellm().completion_cost(completion_response=raw))
    except Exception:  # no price known for this model (local servers): cost unknown
        return None
