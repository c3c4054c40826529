"""Agents: classes whose decorated methods handle events and serve tools.

>>> class Echo(Agent):
...     @on_event("demo.ping")
...     async def ping(self, event, ctx):
...         await ctx.reply(event, {"pong": event.data})
>>> Echo("echo").handlers[0].pattern
'demo.ping'
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ..bus.qos import QOS_NAMES
from ..protocol.envelope import Envelope
from ..protocol.handlers import HandlerSpec
from ..protocol.topics import compile_pattern

if TYPE_CHECKING:
    from .context import Context

__all__ = ["AGENT_ID", "Agent", "HandlerSpec", "ToolSpec", "on_event", "overrides", "tool"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*\Z")
_TOOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]*(\.[A-Za-z0-9][A-Za-z0-9_\-]*)*\Z")


@dataclass(frozen=True)
class ToolSpec:
    """What ``@tool`` recorded about a tool method."""

    name: str
    method: str
    description: str


def _require_coroutine(fn: Callable[..., Any], decorator: str) -> None:
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(
            f"{decorator} needs an async function: declare "
            f"`async def {getattr(fn, '__name__', 'handler')}(self, event, ctx)`"
        )


def on_event(
    pattern: str,
    *,
    qos: str = "reliable",
    mailbox_size: int | None = None,
    max_size: int = 100,
    max_delay: float = 0.05,
    timeout: float | None = None,
) -> Callable[[F], F]:
    """Mark ``async def handler(self, event, ctx)`` as the handler of a topic pattern.

    Args:
        pattern: topic or wildcard pattern (``market.price.*``); checked now, so a bad
            one raises :class:`~loom_kernel.errors.TopicError` at import time.
        qos: ``"reliable"`` (default, in order, gaps reported), ``"realtime"`` (bounded
            mailbox, oldest dropped and counted) or ``"batched"`` (the handler gets lists).
        mailbox_size: mailbox bound (default: ``[runtime] mailbox_size`` for realtime).
        max_size: the most events one batch holds, for ``qos="batched"``.
        max_delay: the most seconds a batch waits after its first event, for ``qos="batched"``.
        timeout: seconds one call may run; past it the handler is cancelled, the error
            is published on ``loom.agent.<id>.error`` and a requester gets an error reply
            (:class:`~loom_kernel.errors.HandlerTimeout`). Default: ``[runtime]
            handler_timeout`` (unset: no limit). A handler that blocks the loop without
            awaiting cannot be cancelled: the runtime's watchdog reports it ``stalled``.

    Events of one subscription are handled one at a time, in order; different
    subscriptions of the same agent run concurrently.
    """
    compile_pattern(pattern)
    if qos not in QOS_NAMES:
        raise ValueError(f"unknown qos {qos!r}: use one of {', '.join(QOS_NAMES)}")
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise ValueError(f"timeout={timeout!r}: use a number of seconds > 0, or None")

    def mark(fn: F) -> F:
        _require_coroutine(fn, "@on_event")
        specs = list(getattr(fn, "__loom_handlers__", ()))
        specs.append(
            HandlerSpec(pattern, qos, fn.__name__, mailbox_size, max_size, max_delay, timeout)
        )
        fn.__loom_handlers__ = tuple(specs)  # type: ignore[attr-defined]
        return fn

    return mark


def tool(name: str | None = None, *, description: str | None = None) -> Callable[[F], F]:
    """Mark ``async def method(self, **args)`` as a tool any agent can call by name.

    The tool is served on the bus while its agent runs: ``await ctx.tool(name, args)``
    from any process reaches it. ``name`` defaults to the method name.
    """

    def mark(fn: F) -> F:
        _require_coroutine(fn, "@tool")
        tool_name = name or fn.__name__
        if not _TOOL_NAME.match(tool_name):
            raise ValueError(
                f"bad tool name {tool_name!r}: use letters, digits, '_' and '-', "
                "dot-separated (e.g. 'web-search' or 'prices.latest')"
            )
        doc = description or inspect.getdoc(fn) or ""
        fn.__loom_tool__ = ToolSpec(tool_name, fn.__name__, doc)  # type: ignore[attr-defined]
        return fn

    return mark


class Agent:
    """Base class of agents.

    Subclass it, decorate handlers with :func:`on_event` and tools with :func:`tool`,
    and optionally override the lifecycle hooks :meth:`on_start`, :meth:`run` and
    :meth:`on_stop`. Start it with ``await runtime.start(MyAgent("my-id"))``.

    Args:
        agent_id: unique on the bus; letters, digits, ``_`` and ``-``. Defaults to
            the class attribute ``id`` or the class name in kebab case.
    """

    id: str = ""
    #: False for observers (dashboards, recorders): the runtime records no span for
    #: their handlers, so watching a workflow does not add to its trace.
    traced: bool = True

    def __init__(self, agent_id: str | None = None):
        chosen = agent_id or type(self).id or _kebab(type(self).__name__)
        if not isinstance(chosen, str) or not AGENT_ID.match(chosen):
            raise ValueError(
                f"bad agent id {chosen!r}: use letters, digits, '_' and '-' "
                "(it becomes a topic segment, e.g. loom.agent.<id>.heartbeat)"
            )
        self.id = chosen
        #: What the agent keeps across a reload of its code (see :meth:`on_reload`).
        self.state: dict[str, Any] = {}

    @property
    def handlers(self) -> list[HandlerSpec]:
        """Every ``@on_event`` of this agent's class."""
        return [spec for _, specs in _marked(type(self), "__loom_handlers__") for spec in specs]

    @property
    def tools(self) -> list[ToolSpec]:
        """Every ``@tool`` of this agent's class."""
        return [spec for _, spec in _marked(type(self), "__loom_tool__")]

    def handler_for(self, spec: HandlerSpec) -> Callable[[Envelope, Context], Awaitable[Any]]:
        """The bound method that handles ``spec``'s events."""
        return getattr(self, spec.name)

    async def on_start(self, ctx: Context) -> None:
        """Called once, after the agent's subscriptions are live."""

    async def on_reload(self, old: Agent, ctx: Context) -> None:
        """Called on the new version of the agent when its code is reloaded, before it
        takes over from ``old`` (``on_start`` does not run again). By default it keeps
        ``old.state``; override it to carry more, or to reopen what ``on_start`` opened.
        If it raises, the old version goes on running."""
        self.state = old.state

    async def run(self, ctx: Context) -> None:
        """Optional long-running body (a producer loop, say); cancelled at stop."""

    async def on_stop(self, ctx: Context) -> None:
        """Called once when the agent stops, before its subscriptions close."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id!r}>"


def _marked(cls: type, attribute: str) -> list[tuple[str, Any]]:
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            marker = getattr(value, attribute, None)
            if marker is not None:
                found[name] = marker
            elif name in found:
                del found[name]  # overridden without the decorator
    return list(found.items())


def _kebab(name: str) -> str:
    # HTTPAgent -> http-agent, DataAgent -> data-agent
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", name).lower()


def overrides(agent: Agent, hook: str) -> bool:
    """True when the agent's class overrides a lifecycle hook of :class:`Agent`."""
    return getattr(type(agent), hook) is not getattr(Agent, hook)
