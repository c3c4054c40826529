"""What JetStream's stream holds, read by time: the NATS side of replay and time travel.

:class:`StreamHistory` answers :func:`~.replay.replay` as the SQLite
:class:`~.store.EventLog` does: the events of a time range and topic patterns, in the
order the stream stored them. It reads through an ephemeral consumer that starts at a
time (JetStream's ``DeliverPolicy.BY_START_TIME``), filtered on the patterns' subjects,
without acks, and stops at the stream's last message as it was when it began (or at
``until``): a replay does not chase what is published meanwhile.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from ..bus.nats.client import NatsClient
from ..bus.nats.codec import decode_message
from ..bus.nats.subjects import pattern_subject
from ..errors import LoomError, ProtocolError, TopicError
from ..protocol.envelope import Envelope
from .store import When, when_ns

__all__ = ["StreamHistory"]

_PAGE = 500


class StreamHistory:
    """The events of JetStream stream ``stream``, by time (see the module docstring)."""

    def __init__(self, client: NatsClient, stream: str):
        self.client = client
        self.stream = stream
        self._js: Any = None

    def _jetstream(self) -> Any:
        if self._js is None:
            self._js = self.client.connection.jetstream()
        return self._js

    async def count(self, since: When = None, until: When = None) -> int:
        """About how many events the stream holds (the whole stream's count)."""
        try:
            info = await self._jetstream().stream_info(self.stream)
        except Exception as exc:
            raise LoomError(
                f"no JetStream stream {self.stream!r} ({type(exc).__name__}: {exc}): events are "
                "recorded while [eventlog] enabled = true on the NATS backend"
            ) from None
        return int(info.state.messages)

    async def pages(
        self, since: When = None, until: When = None, topics: Sequence[str] | None = None
    ) -> AsyncIterator[list[Envelope]]:
        """The events from ``since`` to ``until`` on ``topics`` (None: all), page by page."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        js = self._jetstream()
        info = await js.stream_info(self.stream)
        last = int(info.state.last_seq)
        start_ns = when_ns(since, "since", 0)
        end_ns = when_ns(until, "until", time.time_ns())
        subjects = [pattern_subject(p) for p in topics] if topics else None
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME, ack_policy=AckPolicy.NONE,
            opt_start_time=datetime.fromtimestamp(start_ns / 1e9, UTC),
            filter_subjects=subjects, inactive_threshold=30.0,
        )  # fmt: skip
        if last == 0:
            return
        pull = await js.pull_subscribe("", stream=self.stream, config=config)
        try:
            while True:
                page, done = await self._page(pull, last, end_ns)
                if page:
                    yield page
                if done:
                    return
        finally:
            await pull.unsubscribe()

    async def _page(self, pull: Any, last: int, end_ns: int) -> tuple[list[Envelope], bool]:
        import nats.errors

        try:
            messages = await pull.fetch(_PAGE, timeout=2.0)
        except (TimeoutError, nats.errors.TimeoutError):
            return [], True  # nothing more matches
        page: list[Envelope] = []
        for msg in messages:
            meta = msg.metadata
            if meta.timestamp and _ns_of(meta.timestamp) > end_ns:
                return page, True
            with contextlib.suppress(ProtocolError, TopicError):  # replayed without it
                page.append(decode_message(msg.subject, msg.data, msg.headers))
            if meta.sequence.stream >= last or meta.num_pending == 0:
                return page, True
        return page, False

    async def aclose(self) -> None:
        """Nothing to close: the client is the caller's."""


def _ns_of(stamp: Any) -> int:
    return int(stamp.timestamp() * 1e9) if isinstance(stamp, datetime) else int(stamp)
