"""The supervisor of ``loom run``: the project's agents in worker processes, kept alive.

Each ``[agents.<id>]`` (enabled) runs in a worker process (:mod:`loom_kernel.ops.worker`);
agents sharing a ``group`` share one. A worker that exits is restarted by its
``restart`` policy (``on-failure``: a non-zero exit; ``always``; ``never``) with an
exponential backoff (0.5 s doubling to 30 s, back to 0.5 s after a minute up). The
supervisor, which owns the project's bus when it started it:

- publishes its state on ``loom.supervisor.state`` every heartbeat interval;
- answers control requests on ``loom.supervisor.control``: ``{"action": "start" |
  "stop" | "restart", "agent": id}`` (a worker is the unit: stopping an agent stops
  the agents of its group, and the reply says which);
- keeps the last log lines of every agent (``loom.log.<agent>``) and answers
  ``loom.supervisor.logs`` requests with them, so ``loom logs`` shows recent history.

Workers' stdout and stderr go to ``.loom/logs/<worker>.log`` in the project folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..agents import Agent, Context, on_event
from ..config import LoomConfig
from ..errors import LoomError
from ..protocol import Envelope, reserved
from ..runtime import Runtime
from .worker import EXIT_BAD_AGENT

__all__ = ["CONTROL_TOPIC", "LOGS_TOPIC", "STATE_TOPIC", "Supervisor", "Worker"]

log = logging.getLogger("loom.supervisor")
STATE_TOPIC = reserved.SUPERVISOR_STATE
CONTROL_TOPIC = reserved.SUPERVISOR_CONTROL
LOGS_TOPIC = reserved.SUPERVISOR_LOGS
BACKOFF_MIN, BACKOFF_MAX, HEALTHY_AFTER = 0.5, 30.0, 60.0
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL
LOG_LINES = 500  # kept per agent


@dataclass
class Worker:
    """One worker process and what the supervisor knows of it."""

    name: str
    agents: list[str]
    restart: str
    want: str = "running"  # running | stopped
    state: str = "starting"  # starting | running | backoff | stopped | failed
    #: Why the worker is ``failed`` without a restart (a configuration error), if it is.
    error: str | None = None
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    last_exit: int | None = None
    started: float = 0.0
    backoff: float = BACKOFF_MIN
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker": self.name,
            "agents": self.agents,
            "state": self.state,
            "want": self.want,
            "pid": self.process.pid if self.process and self.process.returncode is None else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "restart": self.restart,
            "error": self.error,
            "uptime_s": round(time.monotonic() - self.started, 1) if self.state == "running" else 0,
        }


class Supervisor:
    """Runs and watches the workers of one project. Create, ``await start()``, ``aclose()``."""

    def __init__(
        self, runtime: Runtime, config: LoomConfig, *, group: str | None = None,
        only: list[str] | None = None, reload: bool = False,
    ):  # fmt: skip
        self.runtime = runtime
        self.config = config
        self.reload = reload
        self.workers = _plan(config, group=group, only=only)
        if not self.workers:
            raise LoomError(
                "no agents to run: declare them as [agents.<id>] with module = "
                '"package.module:Class" (`loom create agent NAME` does it)'
                + (f" in group {group!r}" if group else "")
            )
        self.logs: dict[str, deque[dict[str, Any]]] = {}
        self.logs_dir = config.project_dir / ".loom" / "logs"
        self._closing = False
        self._beat: asyncio.Task[None] | None = None

    @property
    def id(self) -> str:
        return f"supervisor-{self.runtime.client.client_id}"

    def worker_of(self, agent: str) -> Worker | None:
        return next((w for w in self.workers.values() if agent in w.agents), None)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        await self.runtime.start(_SupervisorAgent(self))
        for worker in self.workers.values():
            worker.task = asyncio.get_running_loop().create_task(
                self._keep(worker), name=f"loom:worker:{worker.name}"
            )
        self._beat = asyncio.get_running_loop().create_task(self._report(), name="loom:supervisor")

    async def aclose(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after the grace period)."""
        self._closing = True
        for worker in self.workers.values():
            worker.want = "stopped"
        await asyncio.gather(*(self._terminate(w) for w in self.workers.values()))
        for task in [w.task for w in self.workers.values()] + [self._beat]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._publish_state()

    # -- keeping workers alive -------------------------------------------------------

    async def _keep(self, worker: Worker) -> None:
        while not self._closing:
            if worker.want != "running":
                await asyncio.sleep(0.1)
                continue
            process = await self._spawn(worker)
            code = await process.wait()
            worker.last_exit = code
            uptime = time.monotonic() - worker.started
            if self._closing or worker.want != "running":
                worker.state = "stopped"
                continue
            if code == EXIT_BAD_AGENT:
                self._give_up(worker, code)
                continue
            if worker.restart == "never" or (worker.restart == "on-failure" and code == 0):
                worker.state = "stopped" if code == 0 else "failed"
                worker.want = "stopped"
                log.warning(
                    "worker %s exited with %s; not restarted (%s)",
                    worker.name,
                    code,
                    worker.restart,
                )
                self._publish_state()
                continue
            worker.backoff = (
                BACKOFF_MIN if uptime > HEALTHY_AFTER else min(worker.backoff * 2, BACKOFF_MAX)
            )
            worker.state = "backoff"
            worker.restarts += 1
            log.warning(
                "worker %s (%s) exited with %s after %.1f s; restarting in %.1f s%s",
                worker.name, ", ".join(worker.agents), code, uptime, worker.backoff,
                self._why(worker, code),
            )  # fmt: skip
            self._publish_state()
            await asyncio.sleep(worker.backoff)

    def _give_up(self, worker: Worker, code: int) -> None:
        """A worker that cannot load its agents is misconfigured: restarting it would
        fail the same way forever. Stop its group and say why."""
        worker.state = "failed"
        worker.want = "stopped"
        worker.error = self._last_line(worker) or f"exit code {code}"
        log.error(
            "worker %s (%s) cannot start: %s; not restarted: fix loom.toml or the agent's "
            "module, then `loom start %s`",
            worker.name, ", ".join(worker.agents), worker.error, worker.agents[0],
        )  # fmt: skip
        self._publish_state()

    def _last_line(self, worker: Worker) -> str:
        """The worker's last log line (what it printed before exiting)."""
        with contextlib.suppress(OSError):
            lines = (self.logs_dir / f"{worker.name}.log").read_text(errors="replace").splitlines()
            if lines:
                return lines[-1].removeprefix("loom worker: ")
        return ""

    def _why(self, worker: Worker, code: int) -> str:
        last = self._last_line(worker) if code != 0 else ""
        return f": {last}" if last else ""

    async def _spawn(self, worker: Worker) -> asyncio.subprocess.Process:
        path = self.config.path
        if path is None:
            raise LoomError("`loom run` needs a loom.toml: create one with `loom init`")
        logfile = (self.logs_dir / f"{worker.name}.log").open("ab")
        try:
            worker.process = process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "loom_kernel.ops.worker",
                "--config", str(path), "--agents", ",".join(worker.agents),
                *(["--reload"] if self.reload else []),
                cwd=self.config.project_dir, stdout=logfile, stderr=logfile,
            )  # fmt: skip
        finally:
            logfile.close()
        worker.started = time.monotonic()
        worker.state = "running"
        worker.error = None
        self._publish_state()
        return process

    async def _terminate(self, worker: Worker) -> None:
        process = worker.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            log.warning("worker %s ignored SIGTERM for %g s: killing it", worker.name, STOP_GRACE)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    # -- control ---------------------------------------------------------------------

    async def control(self, action: str, agent: str) -> dict[str, Any]:
        """Start, stop or restart the worker of ``agent``; returns what was done."""
        worker = self.worker_of(agent)
        if worker is None:
            raise LoomError(f"no agent {agent!r} here (agents: {', '.join(self.agent_ids())})")
        if action not in ("start", "stop", "restart"):
            raise LoomError(f"unknown action {action!r}: use start, stop or restart")
        if action in ("stop", "restart"):
            worker.want = "stopped"
            await self._terminate(worker)
            worker.state = "stopped"
        if action in ("start", "restart"):
            worker.backoff = BACKOFF_MIN
            worker.want = "running"
        self._publish_state()
        return {"action": action, "agent": agent, "worker": worker.name, "agents": worker.agents}

    def agent_ids(self) -> list[str]:
        return [agent for worker in self.workers.values() for agent in worker.agents]

    # -- reporting -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "supervisor": self.id,
            "project": str(self.config.project_dir),
            "workers": [worker.to_dict() for worker in self.workers.values()],
        }

    def _publish_state(self) -> None:
        with contextlib.suppress(LoomError):
            self.runtime.context.endpoint.report(STATE_TOPIC, self.state(), type="state")

    async def _report(self) -> None:
        while True:
            self._publish_state()
            await asyncio.sleep(self.config.runtime.heartbeat_interval)

    def remember(self, event: Envelope) -> None:
        agent = event.topic.rsplit(".", 1)[-1]
        if agent in self.agent_ids() and isinstance(event.data, dict):
            lines = self.logs.setdefault(agent, deque(maxlen=LOG_LINES))
            lines.append(
                {**event.data, "agent": agent, "ts": event.ts / 1e9 if event.ts else time.time()}
            )


class _SupervisorAgent(Agent):
    """The supervisor's presence on the bus: control, logs, log history."""

    def __init__(self, supervisor: Supervisor):
        super().__init__(supervisor.id.replace("supervisor-rt-", "supervisor-"))
        self.supervisor = supervisor

    @on_event(CONTROL_TOPIC)
    async def control(self, event: Envelope, ctx: Context) -> None:
        request = event.data if isinstance(event.data, dict) else {}
        agent = str(request.get("agent", ""))
        if self.supervisor.worker_of(agent) is None:
            return  # another supervisor of the project may run it: stay silent
        await ctx.reply(event, await self.supervisor.control(str(request.get("action")), agent))

    @on_event(LOGS_TOPIC)
    async def history(self, event: Envelope, ctx: Context) -> None:
        request = event.data if isinstance(event.data, dict) else {}
        agent, limit = request.get("agent"), int(request.get("limit") or 100)
        lines = [
            line
            for name, kept in self.supervisor.logs.items()
            if agent in (None, name)
            for line in kept
        ]
        lines.sort(key=lambda line: line["ts"])
        await ctx.reply(event, lines[-limit:])

    @on_event(reserved.LOGS, qos="realtime")
    async def log_line(self, event: Envelope, ctx: Context) -> None:
        self.supervisor.remember(event)


def _plan(config: LoomConfig, *, group: str | None, only: list[str] | None) -> dict[str, Worker]:
    """Workers from ``[agents.*]``: one per group, one per ungrouped agent."""
    workers: dict[str, Worker] = {}
    for agent_id, entry in config.agents.items():
        if not entry.enabled or (only and agent_id not in only):
            continue
        name = entry.group or agent_id
        if group is not None and name != group:
            continue
        worker = workers.setdefault(name, Worker(name, [], entry.restart))
        worker.agents.append(agent_id)
        if entry.restart == "always" or (
            entry.restart == "on-failure" and worker.restart == "never"
        ):
            worker.restart = entry.restart  # the most insistent policy of the group wins
    unknown = sorted(set(only or ()) - set(config.agents))
    if unknown:
        declared = ", ".join(config.agents) or "none"
        raise LoomError(f"no [agents.*] named {', '.join(unknown)} (declared: {declared})")
    return workers
