"""The handler contract: what every layer composes around.

A handler receives one event (an :class:`~loom_kernel.protocol.envelope.Envelope`, or a
list of them for ``batched`` subscriptions) and the agent's context. A middleware wraps a
handler into another one, knowing the handler's :class:`HandlerSpec`: tracing, metrics and
retries are middleware, composed by the runner in order, none of them special.

>>> def timing(spec, handler):
...     async def timed(event, ctx):
...         return await handler(event, ctx)
...     return timed
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Handler", "HandlerSpec", "Middleware"]

#: ``async def handler(event_or_batch, ctx)``.
Handler = Callable[[Any, Any], Awaitable[Any]]


@dataclass(frozen=True)
class HandlerSpec:
    """What ``@on_event`` (or ``@tool``) recorded about a handler, and, once an agent runs
    it, which agent it belongs to.

    Attributes:
        pattern: the topic pattern it handles.
        qos: ``reliable``, ``realtime`` or ``batched``.
        name: the method's name (a tool handler's is the tool's method).
        mailbox_size, max_size, max_delay: mailbox bound and batch limits.
        timeout: seconds one call may run before it is cancelled (None: the runtime's
            ``[runtime] handler_timeout``).
        agent: the id of the agent running it ("" until bound).
        traced: False for observer agents: no span of their own (the trace context
            still flows through what they emit).
    """

    pattern: str
    qos: str
    name: str
    mailbox_size: int | None = None
    max_size: int = 100
    max_delay: float = 0.05
    timeout: float | None = None
    agent: str = ""
    traced: bool = True

    def mailbox_options(self) -> dict[str, Any]:
        return {
            "maxsize": self.mailbox_size,
            "max_size": self.max_size,
            "max_delay": self.max_delay,
        }

    def bind(self, agent: str, *, traced: bool = True) -> HandlerSpec:
        """This spec as run by one agent."""
        return dataclasses.replace(self, agent=agent, traced=traced)


#: Wraps a handler into another: ``middleware(spec, handler) -> handler``.
Middleware = Callable[[HandlerSpec, Handler], Handler]
