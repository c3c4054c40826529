"""A task the runtime keeps running beside the agents until it closes: the heartbeat loop,
the services that answer a subscription (code reloads, the bus's refusals)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

__all__ = ["Background"]


class Background:
    """Runs one task from :meth:`_spawn` until :meth:`aclose` cancels it."""

    _task: asyncio.Task[None] | None = None

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        self._task = asyncio.get_running_loop().create_task(work, name=name)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
