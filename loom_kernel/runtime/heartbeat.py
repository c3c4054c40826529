"""Heartbeats: what each agent and the bus report, every ``[runtime] heartbeat_interval``.

Every active agent publishes its statistics on ``loom.agent.<id>.heartbeat`` (its status
among them) and what code it runs (:func:`describe`), the process its transport's counters
and its tracing's (spans exported, dropped, and what reached an OTLP backend) on
``loom.client.<id>.stats``, and the process that runs the broker the broker's on
``loom.broker.stats``. The studio, ``loom
status`` and the supervisor read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from ..agents.runner import AgentRunner
from ..bus.zeromq.broker import Broker
from ..errors import LoomError
from ..messaging.endpoint import Endpoint
from ..protocol import reserved
from .background import Background

__all__ = ["Heartbeat", "beat", "describe"]

log = logging.getLogger("loom.runtime")


def beat(runner: AgentRunner) -> None:
    """Publish one agent's heartbeat now (its statistics, status included, and its code:
    :func:`describe`)."""
    with contextlib.suppress(LoomError):
        runner.ctx.endpoint.report(
            reserved.heartbeat(runner.agent.id),
            {**runner.statistics().to_dict(), **describe(runner)},
            type="heartbeat",
        )


def describe(runner: AgentRunner) -> dict[str, Any]:
    """What an agent runs, as its heartbeat tells it: the patterns it subscribes to (its
    handlers' and its tools' topics), its class, that class's module and the version of
    its code (1, then one more at each reload). The studio reads them to show who listens
    to a topic and which module to reload. On a CURVE bus, also the identity its process
    proves (the broker refuses a heartbeat that names another: the studio's tenant view
    relies on it)."""
    agent = runner.agent
    patterns = [spec.pattern for spec in agent.handlers]
    patterns += [reserved.tool_topic(info.name) for info in runner.tools]
    described: dict[str, Any] = {
        "patterns": list(dict.fromkeys(patterns)),
        "module": type(agent).__module__,
        "class": type(agent).__qualname__,
        "version": runner.version,
    }
    bus = runner.ctx.config.bus
    if bus.security == "curve":
        described["identity"] = bus.identity
    return described


class Heartbeat(Background):
    """Publishes the reports above until :meth:`aclose`.

    Args:
        interval: seconds between two rounds.
        runners: the runners of the process, read at every round.
        endpoint: the process's own endpoint (transport statistics go out from it).
        broker: the broker this process runs, if any, read at every round (a process
            may start running it by taking the bus over).
    """

    def __init__(
        self,
        interval: float,
        runners: Callable[[], Iterable[AgentRunner]],
        endpoint: Endpoint,
        broker: Callable[[], Broker | None] = lambda: None,
    ):
        self.interval = interval
        self.runners = runners
        self.endpoint = endpoint
        self.broker = broker
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._spawn(self._run(), "loom:heartbeat")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.round()
            except LoomError as exc:
                log.warning("heartbeat skipped: %s", exc)

    def round(self) -> None:
        """One round of reports."""
        for runner in self.runners():
            if runner.active:
                beat(runner)
        transport = self.endpoint.transport
        stats = transport.statistics()
        report = {**stats.to_dict(), "tracing": self.endpoint.tracer.statistics().to_dict()}
        self.endpoint.report(reserved.client_stats(stats.client_id), report, type="stats")
        broker = self.broker()
        if broker is not None:
            self.endpoint.report(reserved.BROKER_STATS, broker.statistics().to_dict(), type="stats")
