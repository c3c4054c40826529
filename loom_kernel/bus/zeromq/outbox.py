"""What a client sends, and when: adaptive batching on its PUB socket.

The first event published in a turn of the event loop leaves at once, so a lone event is
never delayed. The ones that follow in the same turn wait for the end of it (a callback
scheduled with ``call_soon``) and leave together: each run of consecutive events on one
topic as one batch message (:mod:`loom_kernel.protocol.batch`), a run of one as a plain
event. Order is kept: runs leave in the order their events were published. ZeroMQ's
topic filtering keeps working, since a batch carries one topic in its frame 0.
"""

from __future__ import annotations

import asyncio

import zmq

from ...protocol.batch import encode_batch

__all__ = ["Outbox"]

_BATCH_EVENTS = 1024  # events per batch message at most
_BATCH_BYTES = 1 << 20  # payload bytes per batch message, about
_PENDING_MAX = 8192  # events waiting for the end of the turn: sent at once past it


class Outbox:
    """The sending side of one client (see the module docstring).

    Args:
        batching: False: every event leaves at once as its own message.
    """

    def __init__(self, batching: bool = True):
        self.batching = batching
        self.batches = 0  # batch messages sent
        self._socket: zmq.Socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # What waits for the end of the turn, frame by frame (three parallel lists, not a
        # list of frame lists: one list kept per event would be an object the garbage
        # collector walks until the flush).
        self._topics: list[bytes] = []
        self._headers: list[bytes] = []
        self._payloads: list[bytes] = []
        self._window = False  # a flush is scheduled at the end of the loop's turn

    def attach(self, socket: zmq.Socket, loop: asyncio.AbstractEventLoop) -> None:
        self._socket, self._loop = socket, loop

    def detach(self) -> None:
        """Send what waits, then let go of the socket."""
        self.flush()
        self._socket = None

    def send(self, frames: list[bytes]) -> None:
        """Send one event's three frames (encoded already: the sender keeps its envelope
        and may change it), now or at the end of the loop's turn."""
        if self._window:
            self._topics.append(frames[0])
            self._headers.append(frames[1])
            self._payloads.append(frames[2])
            if len(self._topics) >= _PENDING_MAX:
                self.flush()
            return
        socket = self._socket
        if socket is None:
            return
        socket.send(frames[0], zmq.SNDMORE)
        socket.send(frames[1], zmq.SNDMORE)
        socket.send(frames[2])
        if self.batching and self._loop is not None:
            self._window = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send what waited: each run of one topic as a batch, in order."""
        self._window = False
        topics, headers, payloads = self._topics, self._headers, self._payloads
        if not topics:
            return
        self._topics, self._headers, self._payloads = [], [], []
        socket = self._socket
        if socket is None:
            return
        start, count = 0, len(topics)
        while start < count:
            topic, end = topics[start], start + 1
            size = len(payloads[start])
            while (
                end < count
                and topics[end] == topic
                and end - start < _BATCH_EVENTS
                and size < _BATCH_BYTES
            ):
                size += len(payloads[end])
                end += 1
            if end - start == 1:
                socket.send_multipart((topic, headers[start], payloads[start]))
            else:
                socket.send_multipart(encode_batch(topic, headers[start:end], payloads[start:end]))
                self.batches += 1
            start = end
