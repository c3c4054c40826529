"""One vocabulary of errors for Loom.

Every error says what happened and how to fix it. Catch :class:`LoomError` to
catch anything Loom raises on purpose.
"""

from __future__ import annotations

import builtins

__all__ = [
    "BusError",
    "ConfigError",
    "HandlerTimeout",
    "LLMError",
    "LLMTimeout",
    "LoomError",
    "LoomTimeoutError",
    "MemoryQueryError",
    "MissingExtra",
    "ProtocolError",
    "ReloadError",
    "RemoteError",
    "RequestTimeout",
    "ToolError",
    "ToolTimeout",
    "TopicError",
]


class LoomError(Exception):
    """Base class of every error Loom raises on purpose."""


class ConfigError(LoomError):
    """A bad ``loom.toml`` (or settings passed in code): names the file, key and fix."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None):
        where = ""
        if path and key:
            where = f"{path}: [{key}] "
        elif path:
            where = f"{path}: "
        elif key:
            where = f"[{key}] "
        super().__init__(f"{where}{message}")
        self.path = path
        self.key = key


class TopicError(LoomError, ValueError):
    """A topic or subscription pattern breaks a naming rule (the message names the rule)."""


class ProtocolError(LoomError, ValueError):
    """Frames on the bus do not follow ``docs/PROTOCOL.md``."""


class BusError(LoomError):
    """The bus cannot be reached, started or used."""


class MissingExtra(LoomError, ImportError):
    """A feature's optional dependency is not installed: the message names the pip extra
    that brings it (``pip install 'loom-studio[llm]'``)."""


class ToolError(LoomError):
    """A tool call failed: unknown tool, bad arguments, or the tool itself raised."""


class LLMError(LoomError):
    """An LLM provider is misconfigured or failed to answer."""


class LoomTimeoutError(LoomError, builtins.TimeoutError):
    """Something Loom waited for did not happen in time.

    It is also a built-in :class:`TimeoutError`, so ``except TimeoutError`` catches it.
    """


class RequestTimeout(LoomTimeoutError):
    """No reply (or not enough replies) to a request within its timeout."""

    def __init__(self, topic: str, timeout: float, detail: str = ""):
        hint = detail or ("is an agent subscribed to it and replying with ctx.reply(event, data)?")
        super().__init__(f"no reply on {topic!r} within {timeout:g} s: {hint}")
        self.topic = topic
        self.timeout = timeout


class RemoteError(LoomError):
    """The agent answering a request raised; its error type and message are kept."""

    def __init__(self, topic: str, source: str, error_type: str, message: str):
        super().__init__(f"{source} failed handling {topic!r}: {error_type}: {message}")
        self.topic = topic
        self.source = source
        self.error_type = error_type
        self.remote_message = f"{error_type}: {message}"


class HandlerTimeout(LoomTimeoutError):
    """A handler ran past its timeout (``@on_event(timeout=)``, ``[runtime]
    handler_timeout``) and was cancelled."""


class ToolTimeout(ToolError, LoomTimeoutError):
    """A tool (an agent's or an MCP server's) did not answer within its timeout."""


class LLMTimeout(LLMError, LoomTimeoutError):
    """An LLM call did not finish within ``timeout_sec``."""


class MemoryQueryError(LoomError, ValueError):
    """A memory call got a bad argument; the message names it and shows a valid one."""


class ReloadError(LoomError):
    """New code for an agent could not be loaded: the old version goes on running.

    Attributes:
        agent: the agent's id.
        file, line: where the new code failed (None when unknown).
    """

    def __init__(
        self, message: str, *, agent: str, file: str | None = None, line: int | None = None
    ):
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(f"{where}{message}")
        self.agent = agent
        self.file = file
        self.line = line
