"""New code for the agents of a module, wherever they run.

The editor saves a file, then calls :func:`reload_module`: the agents of that module
running in the studio's own process (a notebook's kernel) are reloaded directly
(``rt.reload_module``); those of other processes (``loom run`` workers, other kernels)
through the bus: a ``loom.code.reload`` request, which each runtime running agents of the
module answers after reloading them (``loom_kernel.runtime.reload.ReloadService``). The
heartbeats say which processes run the module, so the wait ends as soon as they have all
answered. Either way, code that does not load changes nothing: the old version goes on,
and the outcome says where the fault is (file, line).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loom_kernel import ReloadError
from loom_kernel.messaging import fan_out
from loom_kernel.protocol import reserved

if TYPE_CHECKING:
    from loom_kernel import Runtime

__all__ = ["ReloadOutcome", "reload_module", "remote_processes"]

REPLY_TIMEOUT_S = 10.0  # a reload re-imports a module: a second or so, even a slow one
MISSED_BEATS = 3  # heartbeats missed before a process counts as gone (as the dashboard's)


@dataclass
class ReloadOutcome:
    """What a reload did: the agents reloaded (id -> new version), or the error."""

    versions: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    file: str | None = None
    line: int | None = None
    silent: list[str] = field(default_factory=list)  # processes that did not answer
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    def failed(self, error: str, file: str | None, line: int | None) -> None:
        if self.error is None:  # the first fault found is the one shown
            self.error, self.file, self.line = error, file, line


def remote_processes(
    agents: Mapping[str, Mapping[str, Any]],
    module: str,
    here: str,
    now: float,
    stale_after: float = 5.0,
) -> set[str]:
    """The processes other than ``here`` whose agents run ``module``, from heartbeats no
    older than ``stale_after`` seconds."""
    return {
        str(beat.get("process"))
        for beat in agents.values()
        if beat.get("module") == module
        and beat.get("process")
        and beat.get("process") != here
        and beat.get("status") not in ("stopped", "failed")
        and now - float(beat.get("seen", now)) < stale_after
    }


async def reload_module(
    runtime: Runtime,
    module: str,
    agents: Mapping[str, Mapping[str, Any]],
    *,
    timeout: float = REPLY_TIMEOUT_S,
) -> ReloadOutcome:
    """Reload ``module`` in this process and in every process whose agents run it.

    Args:
        agents: the agents' last heartbeats (agent id -> heartbeat, with ``module``,
            ``process`` and ``seen``), to know which processes to wait for.
    """
    started = time.perf_counter()
    outcome = ReloadOutcome()
    try:
        for result in await runtime.reload_module(module):
            outcome.versions[result.agent] = result.version
    except ReloadError as exc:
        outcome.failed(str(exc), exc.file, exc.line)
    stale_after = max(5.0, MISSED_BEATS * runtime.config.runtime.heartbeat_interval)
    remote = remote_processes(agents, module, runtime.client.client_id, time.time(), stale_after)
    if remote:
        gathered = await fan_out(
            runtime.context.endpoint, reserved.CODE_RELOAD, {"module": module},
            first=len(remote), timeout=timeout,
        )  # fmt: skip
        answered = set()
        for reply in gathered.events:
            data = reply.data if isinstance(reply.data, dict) else {}
            answered.add(str(data.get("process")))
            if data.get("ok"):
                outcome.versions.update({r["agent"]: r["version"] for r in data["results"]})
            else:
                outcome.failed(str(data.get("error")), data.get("file"), data.get("line"))
        outcome.silent = sorted(remote - answered)
    outcome.seconds = time.perf_counter() - started
    return outcome
