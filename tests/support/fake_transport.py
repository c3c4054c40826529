"""An in-memory :class:`~loom_kernel.bus.Transport` for unit tests at the kernel's seams.

Transports on one :class:`Hub` see each other's events. Every event still goes through
the wire format (``encode_frames`` then ``decode_frames``) and the real
:class:`~loom_kernel.bus.Dispatcher` (exact topic matching, sequence gaps, replies), so
only the sockets are missing: no broker, no ports, no slow joiners. The real-socket tests
stay; these are the fast ones beside them.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

from loom_kernel.bus import ClientStatistics, Dispatcher, ReplyBox, Subscription, make_mailbox
from loom_kernel.protocol import (
    Envelope,
    compile_pattern,
    decode_frames,
    encode_frames,
    new_id,
    reserved,
)

__all__ = ["FakeTransport", "Hub"]

_ids = itertools.count(1)


class Hub:
    """What the broker would be: every transport on it receives every event."""

    def __init__(self) -> None:
        self.transports: list[FakeTransport] = []
        self.sent: list[Envelope] = []

    def transport(self, name: str = "fake") -> FakeTransport:
        return FakeTransport(self, name)

    def topics(self) -> list[str]:
        return [env.topic for env in self.sent]


class FakeTransport:
    """One process's connection to a :class:`Hub` (see the module docstring)."""

    def __init__(self, hub: Hub | None = None, name: str = "fake"):
        self.hub = hub or Hub()
        self.hub.transports.append(self)
        self.client_id = f"{name}-{next(_ids)}"
        self.connected = False
        self._dispatcher = Dispatcher(reserved.inbox(self.client_id, ""))
        self._seq: dict[tuple[str, str], int] = {}
        self._published = 0

    async def connect(self, timeout: float = 5.0) -> None:
        self.connected = True

    async def aclose(self) -> None:
        self.connected = False
        self._dispatcher.close_all()
        if self in self.hub.transports:
            self.hub.transports.remove(self)

    def publish(self, env: Envelope) -> None:
        env.id = env.id or new_id()
        env.ts = env.ts or time.time_ns()
        if not env.seq:
            key = (env.source, env.topic)
            env.seq = self._seq[key] = self._seq.get(key, 0) + 1
        frames = encode_frames(env)
        self._published += 1
        self.hub.sent.append(env)
        for transport in list(self.hub.transports):
            transport._dispatcher.deliver(decode_frames(frames))

    async def subscribe(
        self,
        pattern: str,
        *,
        qos: str = "reliable",
        owner: str = "",
        timeout: float = 5.0,
        **mailbox_options: Any,
    ) -> Subscription:
        compiled = compile_pattern(pattern)
        sub = Subscription(self, compiled, make_mailbox(qos, **mailbox_options), owner)
        self._dispatcher.add(sub)
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        sub.closed = True
        sub.mailbox.close()
        self._dispatcher.remove(sub)

    def new_id(self) -> str:
        return new_id()

    def inbox(self, owner: str) -> str:
        return reserved.inbox(self.client_id, owner)

    def expect_replies(
        self, inbox: str, correlation_id: str, box: ReplyBox | None = None
    ) -> ReplyBox:
        return self._dispatcher.expect_replies(inbox, correlation_id, box)

    def forget(self, inbox: str, correlation_id: str) -> None:
        self._dispatcher.forget(inbox, correlation_id)

    def statistics(self) -> ClientStatistics:
        return self._dispatcher.statistics(self.client_id, self._published)
