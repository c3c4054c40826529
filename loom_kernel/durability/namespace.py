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

from ..bus.transport import Subscription, Transport
from ..bus.wrapper import TransportWrapper
from ..protocol import reserved
from ..protocol.envelope import Envelope

__all__ = ["NamespacedTransport"]


class NamespacedTransport(TransportWrapper):
    """A transport whose topics all live under ``replay.<namespace>.``.

    Args:
        inner: the process's transport.
        namespace: one topic segment, e.g. ``"what-if"``.
    """

    def __init__(self, inner: Transport, namespace: str):
        super().__init__(inner)
        self.namespace = namespace
        self.prefix = reserved.replay_prefix(namespace)

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

    def __repr__(self) -> str:
        return f"<NamespacedTransport {self.namespace!r} over {self.inner!r}>"
