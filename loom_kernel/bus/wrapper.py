"""A transport around another: what it does not change goes to the inner one.

The layers above the bus change a transport by wrapping it, never by reaching inside it:
the event log's :class:`~loom_kernel.durability.DurableTransport`, JetStream's
:class:`~loom_kernel.durability.jetstream.JetStreamTransport`, a replay namespace's
:class:`~loom_kernel.durability.NamespacedTransport`. Each overrides what it is about
(publishing some topics, some subscriptions) and inherits the rest from here.
"""

from __future__ import annotations

from typing import Any

from ..protocol.envelope import Envelope
from .transport import ClientStatistics, ReplyBox, Subscription, Transport

__all__ = ["TransportWrapper"]


class TransportWrapper:
    """Passes every :class:`~.transport.Transport` call to ``inner``."""

    def __init__(self, inner: Transport):
        #: The transport that talks to the bus (its owner closes it).
        self.inner = inner

    @property
    def client_id(self) -> str:
        return self.inner.client_id

    @property
    def connected(self) -> bool:
        return self.inner.connected

    async def connect(self, timeout: float = 5.0) -> None:
        await self.inner.connect(timeout)

    async def aclose(self) -> None:
        """Nothing of its own to close: the inner transport's owner closes it."""

    def publish(self, env: Envelope) -> None:
        self.inner.publish(env)

    def new_id(self) -> str:
        return self.inner.new_id()

    async def subscribe(
        self,
        pattern: str,
        *,
        qos: str = "reliable",
        owner: str = "",
        timeout: float = 5.0,
        **mailbox_options: Any,
    ) -> Subscription:
        return await self.inner.subscribe(
            pattern, qos=qos, owner=owner, timeout=timeout, **mailbox_options
        )

    async def unsubscribe(self, sub: Subscription) -> None:
        await self.inner.unsubscribe(sub)

    def inbox(self, owner: str) -> str:
        return self.inner.inbox(owner)

    def expect_replies(
        self, inbox: str, correlation_id: str, box: ReplyBox | None = None
    ) -> ReplyBox:
        return self.inner.expect_replies(inbox, correlation_id, box)

    def forget(self, inbox: str, correlation_id: str) -> None:
        self.inner.forget(inbox, correlation_id)

    def statistics(self) -> ClientStatistics:
        return self.inner.statistics()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} over {self.inner!r}>"
