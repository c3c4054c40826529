"""Hot reload: new code for running agents, without stopping them.

:meth:`Runtime.reload` re-imports an agent's module (or takes the class you give it, e.g.
redefined in a notebook cell), builds the new version with the same id and hands it to
the agent's runner, which swaps it in (:meth:`AgentRunner.replace`: subscriptions follow
the new decorators, queued events go to the new code, memory and sequence numbers stay).
When the new code cannot load (a syntax error, an import error, an exception while the
module runs, a missing class, a failing constructor or ``on_reload``), the old version
goes on running and :class:`~loom_kernel.errors.ReloadError` says where, with the file
and the line. Every attempt is published on ``loom.agent.<id>.reloaded`` and recorded as
a ``reload <agent>`` span.

Other processes ask for a reload on the bus (:class:`ReloadService`): a request on
``loom.code.reload`` naming a module makes every runtime that runs agents of that module
reload it and reply; the studio's editor, in a process of its own, asks it after a save.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..agents.agent import Agent
from ..agents.runner import AgentRunner
from ..bus.transport import Subscription
from ..errors import LoomError, ReloadError
from ..messaging.endpoint import Endpoint
from ..protocol import reserved
from ..protocol.envelope import Envelope
from .background import Background

__all__ = ["ReloadResult", "ReloadService", "load_module", "new_version", "swap"]

log = logging.getLogger("loom.reload")


@dataclass(frozen=True)
class ReloadResult:
    """One agent's reload: its new version and what its subscriptions did."""

    agent: str
    version: int
    module: str
    kept: list[str]
    added: list[str]
    removed: list[str]
    dropped: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def load_module(name: str, agent: str) -> ModuleType:
    """Import the module afresh (``importlib.reload``).

    Raises:
        ReloadError: it cannot be imported; the file and line of the fault.
    """
    module = sys.modules.get(name)
    if module is None or name == "__main__":
        raise ReloadError(
            f"{agent!r} comes from {name!r}, which cannot be re-imported: pass the new class, "
            f"`await rt.reload({agent!r}, NewClass)`",
            agent=agent,
        )
    cached = getattr(module, "__cached__", None)
    if cached:  # compiled bytecode is trusted by mtime and size, to the second: two edits
        # of the same size within one second would load the first one again
        with contextlib.suppress(OSError):
            Path(cached).unlink()
    importlib.invalidate_caches()
    try:
        return importlib.reload(module)
    except SyntaxError as exc:
        raise ReloadError(
            f"syntax error: {exc.msg}", agent=agent, file=exc.filename, line=exc.lineno
        ) from None
    except Exception as exc:
        file, line = _where(exc, getattr(module, "__file__", None))
        raise ReloadError(
            f"{name} failed to import: {type(exc).__name__}: {exc}",
            agent=agent,
            file=file,
            line=line,
        ) from None


def new_version(old: Agent, cls: type[Agent] | None, module: ModuleType | None) -> Agent:
    """The new version of ``old``: ``cls``, or its class of the same name in ``module``.

    Raises:
        ReloadError: no such class, not an Agent, or its constructor failed.
    """
    name = type(old).__name__
    if cls is None and module is not None:
        cls = getattr(module, name, None)
        # a reload runs the module again in the same namespace: a class it no longer
        # defines is still there, as the old object
        if cls is None or cls is type(old):
            raise ReloadError(
                f"{module.__name__} has no class {name!r} any more (the agent {old.id!r} runs "
                "one): keep the class name, or start the renamed class as a new agent",
                agent=old.id,
                file=getattr(module, "__file__", None),
            )
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        raise ReloadError(f"{cls!r} is not an Agent class", agent=old.id)
    try:
        return cls(old.id)
    except Exception as exc:
        file, line = _where(exc, _file_of(cls.__module__))
        raise ReloadError(
            f"{cls.__name__}({old.id!r}) failed: {type(exc).__name__}: {exc}",
            agent=old.id,
            file=file,
            line=line,
        ) from None


async def swap(runner: AgentRunner, new: Agent) -> ReloadResult:
    """Swap ``new`` in for the runner's agent; report it on the bus and as a span.

    Raises:
        ReloadError: ``on_reload`` failed; the old version goes on.
    """
    endpoint = runner.ctx.endpoint
    started = time.perf_counter()
    module = type(new).__module__
    with endpoint.tracer.span(
        f"reload {new.id}", agent=new.id, attributes={"loom.reload.module": module}
    ) as span:
        try:
            report = await runner.replace(new)
        except Exception as exc:
            file, line = _where(exc, _file_of(module))
            raise ReloadError(
                f"{type(new).__name__}.on_reload failed: {type(exc).__name__}: {exc}",
                agent=new.id,
                file=file,
                line=line,
            ) from None
        if span is not None:
            span.set_attribute("loom.reload.version", runner.version)
    result = ReloadResult(
        agent=new.id,
        version=runner.version,
        module=module,
        kept=report.kept,
        added=report.added,
        removed=report.removed,
        dropped=report.dropped,
        seconds=round(time.perf_counter() - started, 6),
    )
    announce(runner, {"ok": True, **result.to_dict()})
    return result


def announce(runner: AgentRunner, data: dict[str, Any]) -> None:
    """Publish a reload attempt on ``loom.agent.<id>.reloaded``."""
    with contextlib.suppress(LoomError):  # the bus is closing: the reload is what counts
        runner.ctx.endpoint.report(reserved.reloaded(runner.agent.id), data, type="reload")


def _file_of(module: str) -> str | None:
    return getattr(sys.modules.get(module), "__file__", None)


def _where(exc: BaseException, module_file: str | None) -> tuple[str | None, int | None]:
    """The file and line of the innermost frame in the agent's module (else the last)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if module_file:
        inside = [f for f in frames if Path(f.filename) == Path(module_file)]
        if inside:
            return inside[-1].filename, inside[-1].lineno
    if frames:
        return frames[-1].filename, frames[-1].lineno
    return module_file, None


class ReloadService(Background):
    """Answers other processes' reload requests (``loom.code.reload``, ``{"module": m}``):
    when agents of this process run classes of ``m``, reloads it and replies with each
    agent's result (or the error, file and line: the old code goes on); otherwise stays
    silent, so that the asker, which knows from the heartbeats how many processes run
    that module, stops waiting as soon as they have all answered.

    Args:
        endpoint: the process's own endpoint (requests it sent itself are not answered:
            the asker reloads its own agents directly).
        runners: the runners of the process, read at each request.
        reload_module: reloads a module in this process (``Runtime.reload_module``).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        runners: Callable[[], Iterable[AgentRunner]],
        reload_module: Callable[[str], Awaitable[list[ReloadResult]]],
    ):
        self.endpoint = endpoint
        self.runners = runners
        self.reload_module = reload_module
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        sub = await self.endpoint.subscribe(reserved.CODE_RELOAD)
        self._spawn(self._serve(sub), "loom:reload:requests")

    async def _serve(self, sub: Subscription) -> None:
        async for event in sub:
            if not event.reply_to or event.source == self.endpoint.source:
                continue
            try:
                answer = await self.answer(event)
            except Exception:  # one bad request must not end the service
                log.exception("reload request %s failed", event.id)
                continue
            if answer is not None:
                with contextlib.suppress(LoomError):
                    await self.endpoint.reply(event, answer)

    async def answer(self, event: Envelope) -> dict[str, Any] | None:
        """The reply to one request, or None when no agent here runs that module."""
        module = event.data.get("module") if isinstance(event.data, dict) else None
        if not isinstance(module, str):
            return None
        agents = [
            r.agent.id
            for r in self.runners()
            if r.status not in ("stopped", "failed") and type(r.agent).__module__ == module
        ]
        if not agents:
            return None
        process = self.endpoint.source
        try:
            results = await self.reload_module(str(module))
        except ReloadError as exc:
            return {"ok": False, "process": process, "agents": agents, "error": str(exc),
                    "file": exc.file, "line": exc.line}  # fmt: skip
        return {"ok": True, "process": process, "results": [r.to_dict() for r in results]}
