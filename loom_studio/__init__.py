"""Loom's studio: Panel components that show a running system, inline in a notebook
or as pages of the standalone studio (``loom studio``).

>>> import loom_studio                       # doctest: +SKIP
>>> loom_studio.Dashboard()                  # in a notebook cell: live, beside your agents
>>> loom_studio.Traces()
>>> loom_studio.TopicExplorer(runtime=rt)     # every topic, its schema, a test-event form
>>> loom_studio.Editor(runtime=rt)            # an agent's source: save swaps it in live
>>> loom_studio.Builder(project=".", runtime=rt)  # the agents as a graph, drawn from the code
>>> loom_studio.History(rt.config)            # a time slider over the event log and traces

The components are imported on first use: ``import loom_studio`` (and the ``loom studio``
command's registration) does not load Panel. Shown in a notebook, a component loads Panel's
notebook extension itself (:mod:`loom_studio.notebook`): no ``pn.extension()`` first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from loom_kernel.extras import require

if TYPE_CHECKING:
    from .builder.view import Builder
    from .dashboard import Dashboard
    from .editor import Editor
    from .explorer import TopicExplorer
    from .feed import StudioFeed, get_feed
    from .history import History
    from .traces import Traces

__all__ = [
    "Builder",
    "Dashboard",
    "Editor",
    "History",
    "StudioFeed",
    "TopicExplorer",
    "Traces",
    "get_feed",
]

_WHERE = {
    "Builder": ".builder.view",
    "Dashboard": ".dashboard",
    "Editor": ".editor",
    "TopicExplorer": ".explorer",
    "StudioFeed": ".feed",
    "get_feed": ".feed",
    "History": ".history",
    "Traces": ".traces",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'loom_studio' has no attribute {name!r}")
    require("panel", f"loom_studio.{name}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
