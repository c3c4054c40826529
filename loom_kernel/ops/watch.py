"""``loom run --reload``: agents' modules watched, changed ones reloaded in place.

A worker started with ``--reload`` watches the source files of the modules its agents
come from (``watchfiles``: the operating system's file events, not polling) and, when
one changes, swaps the new code into the running agents of that module
(:meth:`~loom_kernel.runtime.Runtime.reload_module`): no process restart, no event lost,
subscriptions and state kept. A file that does not load leaves the old code running; the
error (file and line) goes to the worker's log and to ``loom.agent.<id>.reloaded``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable

from ..agents import Agent
from ..errors import ReloadError
from ..runtime import Runtime

__all__ = ["module_files", "watch_and_reload"]

log = logging.getLogger("loom.reload")


def module_files(agents: Iterable[Agent]) -> dict[str, str]:
    """The source file (an absolute path) of each agent's module, and the module's name."""
    files = {}
    for agent in agents:
        name = type(agent).__module__
        path = getattr(sys.modules.get(name), "__file__", None)
        if path:
            files[os.path.abspath(path)] = name
    return files


async def watch_and_reload(rt: Runtime, agents: Iterable[Agent]) -> None:
    """Reload the agents' modules as their files change, until cancelled."""
    from watchfiles import awatch

    files = module_files(agents)
    if not files:
        return
    folders = sorted({os.path.dirname(path) for path in files})
    log.warning("watching %s for changes (loom run --reload)", ", ".join(files))

    def watched(_change: object, path: str) -> bool:
        return path in files  # watchfiles reports absolute paths, as the folders are

    async for changes in awatch(*folders, watch_filter=watched):
        for module in sorted({files[path] for _, path in changes if path in files}):
            await _reload(rt, module)


async def _reload(rt: Runtime, module: str) -> None:
    try:
        results = await rt.reload_module(module)
    except ReloadError as exc:
        log.error("%s not reloaded, the running code goes on: %s", module, exc)
        return
    for result in results:
        log.warning(
            "reloaded %s (version %d) from %s in %.1f ms%s",
            result.agent,
            result.version,
            module,
            result.seconds * 1000,
            f": added {', '.join(result.added)}" if result.added else "",
        )
