"""The loop watchdog: a thread that notices when the event loop stops turning.

A handler that blocks the loop (``time.sleep``, a long computation, a blocking call)
stops everything of its process: the other handlers, the heartbeats, the bus client.
Nothing on the loop can report it, so a thread watches. The loop stamps the time every
``tick``; when the stamp is older than ``[runtime] stall_after``, the thread publishes a
``stalled`` heartbeat for every agent of the process, naming the handler that runs
(``blocked_by``), through a PUB socket of its own (pyzmq sockets are not thread-safe:
the client's belong to the loop), again every heartbeat interval while it lasts. When
the loop turns again, each agent records the stall (``stalls``, ``longest_stall_ms`` in
its statistics) and publishes one more heartbeat saying ``stalled`` and for how long.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import zmq

from ..agents.runner import AgentRunner
from ..bus.nats.client import NatsClient
from ..bus.zeromq.client import BusClient
from ..errors import LoomError
from ..protocol import reserved
from ..protocol.envelope import Envelope, encode_data, encode_frames, new_id

__all__ = ["LoopWatchdog"]

log = logging.getLogger("loom.runtime")


class LoopWatchdog:
    """Watches one event loop from a thread (see the module docstring).

    Args:
        stall_after: seconds the loop may go without turning.
        report_every: seconds between two ``stalled`` reports while it lasts.
        runners: the process's agents, read when a stall is reported.
        client: the process's bus client (its address and ZeroMQ context).
    """

    def __init__(
        self,
        stall_after: float,
        report_every: float,
        runners: Callable[[], Iterable[AgentRunner]],
        client: BusClient | NatsClient,
    ):
        self.stall_after = stall_after
        self.report_every = report_every
        self.runners = runners
        self.client = client
        self.stalls = 0
        self._tick_every = min(stall_after / 4, 0.5)
        self._turned = time.monotonic()
        self._blocked_since: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self._turned = time.monotonic()
        self._handle = asyncio.get_running_loop().call_later(self._tick_every, self._tick)
        self._thread = threading.Thread(target=self._watch, name="loom-watchdog", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    # -- on the loop -----------------------------------------------------------------

    def _tick(self) -> None:
        now = time.monotonic()
        since, self._blocked_since = self._blocked_since, None
        self._turned = now
        if since is not None:
            self._recovered(now - since)
        self._handle = asyncio.get_running_loop().call_later(self._tick_every, self._tick)

    def _recovered(self, seconds: float) -> None:
        """The loop turns again after ``seconds``: every agent says it was stalled."""
        self.stalls += 1
        log.warning("the event loop did not turn for %.1f s (a handler blocked it)", seconds)
        for runner in list(self.runners()):
            if not runner.active:
                continue
            runner.note_stall(seconds)
            report = {
                **runner.statistics().to_dict(),
                "status": "stalled",
                "stalled_ms": round(seconds * 1000, 1),
            }
            with contextlib.suppress(LoomError):
                runner.ctx.endpoint.report(
                    reserved.heartbeat(runner.agent.id), report, type="heartbeat"
                )

    # -- on the watchdog's thread ----------------------------------------------------

    def _watch(self) -> None:
        sock = self.client.side_publisher()
        if sock is None:  # a NATS server this thread cannot sign in to: no stall reports
            log.info("the loop watchdog cannot publish from its thread on this bus: it is off")
            return
        last_report = 0.0
        try:
            while not self._stop.wait(self._tick_every):
                turned = self._turned
                now = time.monotonic()
                if now - turned <= self.stall_after:
                    continue
                if self._blocked_since is None:
                    self._blocked_since = turned
                    last_report = 0.0
                if now - last_report >= self.report_every:
                    last_report = now
                    self._report(sock, now - turned)
        finally:
            sock.close(0)

    def _report(self, sock: zmq.Socket, blocked: float) -> None:
        """Publish ``stalled`` heartbeats from this thread (the loop is stuck)."""
        try:
            runners = [r for r in list(self.runners()) if r.active]
            culprit = _culprit(runners)
            for runner in runners:
                data = {
                    **runner.statistics().to_dict(),
                    "status": "stalled",
                    "blocked_ms": round(blocked * 1000, 1),
                    "blocked_by": culprit,
                }
                sock.send_multipart(encode_frames(_heartbeat(runner.agent.id, data)))
        except Exception:  # the loop may have moved on under us: the next round reports
            log.debug("watchdog report skipped", exc_info=True)


def _culprit(runners: list[AgentRunner]) -> str | None:
    """``agent/handler`` of the oldest handler call running (the one blocking the loop)."""
    running = [(started, f"{r.agent.id}/{what}") for r in runners
               for started, what in r.active_handlers()]  # fmt: skip
    return min(running)[1] if running else None


def _heartbeat(agent_id: str, data: dict[str, Any]) -> Envelope:
    payload, content_type = encode_data(data)
    return Envelope(
        topic=reserved.heartbeat(agent_id), type="heartbeat", source=agent_id,
        payload=payload, content_type=content_type, id=new_id(), ts=time.time_ns(),
    )  # fmt: skip
