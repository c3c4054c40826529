"""Loom's studio: Panel components that show a running system, inline in a notebook
or as pages of the standalone studio (``loom studio``).

>>> import loom_studio                       # doctest: +SKIP
>>> loom_studio.Dashboard()                  # in a notebook cell: live, beside your agents
>>> loom_studio.Traces()
"""

from .dashboard import Dashboard
from .feed import StudioFeed, get_feed
from .traces import Traces

__all__ = ["Dashboard", "StudioFeed", "Traces", "get_feed"]
