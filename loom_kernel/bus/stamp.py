"""What a transport writes on the envelopes it publishes: ids, times, sequence numbers.

Every transport names its client ``<name>-<random>`` and makes event ids of its own (a
random prefix, then a counter), so it knows its own events when they come back, and
numbers each (source, topic) stream 1, 2, 3... so receivers count what went missing.
"""

from __future__ import annotations

import itertools
import os
import time

from ..errors import BusError
from ..protocol.envelope import Envelope

__all__ = ["Stamp", "oversized"]


class Stamp:
    """A client's id, and the stamp it puts on what it publishes."""

    def __init__(self, name: str):
        self.client_id = f"{name}-{os.urandom(5).hex()}"
        #: The prefix of this client's event ids.
        self.id_prefix = f"{os.urandom(6).hex()}-"
        self._ids = itertools.count(1)
        self._seq: dict[tuple[str, str], int] = {}

    def new_id(self) -> str:
        """A new event id, unique across processes, that this client knows as its own."""
        return f"{self.id_prefix}{next(self._ids):x}"

    def is_own(self, event_id: str) -> bool:
        return event_id.startswith(self.id_prefix)

    def stamp(self, env: Envelope) -> None:
        """Fill ``id``, ``ts`` and ``seq`` where they are unset."""
        if not env.id:
            env.id = f"{self.id_prefix}{next(self._ids):x}"
        if not env.ts:
            env.ts = time.time_ns()
        if not env.seq:
            key = (env.source, env.topic)
            env.seq = self._seq.get(key, 0) + 1
            self._seq[key] = env.seq


def oversized(env: Envelope, limit: int) -> BusError:
    """The error for an event whose payload is over ``[bus] max_message_size`` (``limit``)."""
    return BusError(
        f"event on {env.topic!r} has a {len(env.payload):,}-byte payload, over the bus's "
        f"[bus] max_message_size of {limit:,} bytes: send a reference "
        "(a file path, a URL, a key in memory) instead, or raise max_message_size"
    )
