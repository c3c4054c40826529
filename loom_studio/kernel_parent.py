"""Keep ipykernel's current request right while the page talks to the kernel mid-cell.

ipykernel 7 handles a comm message that arrives while an async cell runs at once, beside the
cell (so a cell can ``await component.connected()`` while the page opens the component's
comm). It then puts the kernel's current request (its "parent", which every output, reply
and status names) back to the one it saw when the comm message arrived. When the cell ended
and the next one started meanwhile, that request is over: the next cell's outputs and its
closing ``idle`` status go to the previous cell, and JupyterLab shows the next cell running
(``[*]``) for ever, its Run All never ending. Inline components, whose page sends comm
messages all the time, make it likely on a loaded machine (seen in ipykernel 7.4.0, the
newest; ``tests/studio/test_kernel_parent.py`` reproduces it with a real kernel).

:func:`guard_shell_parent` wraps two of the kernel's methods so that a request whose
handling has ended is never made current again: such a restore keeps the request now
current. The wrapping is done once per kernel, only on a kernel with these methods.
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections import OrderedDict
from typing import Any

__all__ = ["guard_shell_parent"]

log = logging.getLogger("loom.studio")

_KEEP = 1000  # ended requests remembered (a stale restore names a recent one)
_in_comm = contextvars.ContextVar("loom_in_concurrent_comm", default=False)


def guard_shell_parent(kernel: Any) -> bool:
    """Guard ``kernel`` (an ipykernel kernel) once; whether it is guarded."""
    if getattr(kernel, "_loom_parent_guard", False):
        return True
    needed = ("dispatch_shell", "set_parent", "get_parent", "_main_asyncio_lock")
    if not all(hasattr(kernel, name) for name in needed):
        return False  # not the ipykernel this is about: leave it alone
    ended: OrderedDict[str, None] = OrderedDict()
    dispatch, set_parent = kernel.dispatch_shell, kernel.set_parent

    @functools.wraps(dispatch)
    async def dispatch_shell(msg: Any, /, *args: Any, concurrent: bool = False, **kw: Any) -> Any:
        if concurrent:  # a comm message beside a running cell, in a context of its own
            token = _in_comm.set(True)
            try:
                return await dispatch(msg, *args, concurrent=True, **kw)
            finally:
                _in_comm.reset(token)
        try:
            return await dispatch(msg, *args, **kw)
        finally:  # this request is over (its idle status is out): never current again
            msg_id = _msg_id(kernel.get_parent("shell"))
            if msg_id:
                ended[msg_id] = None
                while len(ended) > _KEEP:
                    ended.popitem(last=False)

    @functools.wraps(set_parent)
    def guarded_set_parent(ident: Any, parent: Any, channel: str = "shell") -> Any:
        if channel == "shell" and not _in_comm.get() and _msg_id(parent) in ended:
            current = kernel.get_parent("shell")
            if _msg_id(current) != _msg_id(parent):
                log.debug("kept request %s current (not the ended %s)", _msg_id(current),
                          _msg_id(parent))  # fmt: skip
                parent = current
        return set_parent(ident, parent, channel=channel)

    kernel.dispatch_shell = dispatch_shell
    kernel.set_parent = guarded_set_parent
    kernel._loom_parent_guard = True
    return True


def _msg_id(parent: Any) -> str | None:
    header = parent.get("header") if isinstance(parent, dict) else None
    return header.get("msg_id") if isinstance(header, dict) else None
