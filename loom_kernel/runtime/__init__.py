"""The runtime layer: the composition root.

:func:`open_runtime` gets the process onto its project's bus and builds every layer
below (transport, tracer and middleware, action broker, capabilities); each agent
started on it gets its endpoint, context and runner. :mod:`.heartbeat` publishes what
the agents and the bus report.
"""

from .heartbeat import Heartbeat
from .reload import ReloadResult
from .runtime import Runtime, RuntimeStatistics, open_runtime, run

__all__ = ["Heartbeat", "ReloadResult", "Runtime", "RuntimeStatistics", "open_runtime", "run"]
