"""Replay namespaces: a runtime that lives under ``replay.<namespace>.``, apart from the
real system.

``loom replay --into NS`` re-publishes recorded events on ``replay.NS.<topic>``; a
runtime opened with ``open_runtime(namespace="NS")`` (or ``[runtime] namespace``)
talks through a :class:`NamespacedTransport`, so its agents subscribe under that prefix
and see the events as live, with their original topics, while what they publish goes
back under the prefix: the real system neither sees nor answers any of it.

Reply inboxes (``loom.reply.…``) are addresses, not topics of the system: they stay as
they are, so requests and replies inside a namespace work as usual.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ..bus.transport import ClientStatistics, ReplyBox, Subscription, Transport
from ..protocol import reserved
from ..protocol.envelope import Envelope

__all__ = ["NamespacedTransport"]


class NamespacedTransport:
    """A transport whose topics all live under ``replay.<namespace>.``.

    Args:
        inner: the process's transport.
        namespace: one topic segment, e.g. ``"what-if"``.
    """

    def __init__(self, inner: Transport, namespace: str):
        self.inner = inner
        self.namespace = namespace
        self.prefix = reserved.replay_prefix(namespace)

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
        topic = env.topic
        if topic.startswith((self.prefix, reserved.REPLY_PREFIX)):
            self.inner.publish(env)
            return
        env.topic = self.prefix + topic
        try:
            self.inner.publish(env)
        finally:
            env.topic = topic  # the sender keeps the envelope as it wrote it

    async def subscribe(
        self,
        pattern: str,
        *,
        qos: str = "reliable",
        owner: str = "",
        timeout: float = 5.0,
        **mailbox_options: Any,
    ) -> Subscription:
        sub = await self.inner.subscribe(
            self.prefix + pattern, qos=qos, owner=owner, timeout=timeout, **mailbox_options
        )
        sub.view = self.view
        sub.transport = self
        return sub

    def view(self, item: Any) -> Any:
        """An event (or a batch) as the namespace's agents see it: without the prefix."""
        if isinstance(item, list):
            return [self._strip(env) for env in item]
        return self._strip(item)

    def _strip(self, env: Envelope) -> Envelope:
        if env.topic.startswith(self.prefix):
            return msgspec.structs.replace(env, topic=env.topic[len(self.prefix) :])
        return env

    async def unsubscribe(self, sub: Subscription) -> None:
        await self.inner.unsubscribe(sub)

    def inbox(self, owner: str) -> str:
        return self.inner.inbox(owner)

    def new_id(self) -> str:
        return self.inner.new_id()

    def expect_replies(
        self, inbox: str, correlation_id: str, box: ReplyBox | None = None
    ) -> ReplyBox:
        return self.inner.expect_replies(inbox, correlation_id, box)

    def forget(self, inbox: str, correlation_id: str) -> None:
        self.inner.forget(inbox, correlation_id)

    def statistics(self) -> ClientStatistics:
        return self.inner.statistics()

    def __repr__(self) -> str:
        return f"<NamespacedTransport {self.namespace!r} over {self.inner!r}>"
