"""Module paths of the 0.1 layout, kept importable for one release.

``import loom_kernel.envelope`` (or ``from loom_kernel.client import BusClient``) still
works and gives the module at its new place, with a ``DeprecationWarning`` naming it.
The table below is the whole map; the next release removes it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "install"]

#: old module → new module.
MOVED = {
    "loom_kernel.envelope": "loom_kernel.protocol.envelope",
    "loom_kernel.topics": "loom_kernel.protocol.topics",
    "loom_kernel.spans": "loom_kernel.protocol.spans",
    "loom_kernel.qos": "loom_kernel.bus.qos",
    "loom_kernel.client": "loom_kernel.bus.zeromq.client",
    "loom_kernel.discovery": "loom_kernel.bus.zeromq.discovery",
    "loom_kernel.otel": "loom_kernel.tracing.otel",
    "loom_kernel.span_store": "loom_kernel.tracing.store",
    "loom_kernel.collaboration": "loom_kernel.messaging.collaboration",
    "loom_kernel.tools": "loom_kernel.capabilities.tools",
    "loom_kernel.actions": "loom_kernel.capabilities.actions",
    "loom_kernel.mcp_servers": "loom_kernel.capabilities.mcp_servers",
    "loom_kernel.memory": "loom_kernel.capabilities.memory",
    "loom_kernel.llm": "loom_kernel.capabilities.llm",
    "loom_kernel.agent": "loom_kernel.agents.agent",
    "loom_kernel.context": "loom_kernel.agents.context",
    "loom_kernel.runner": "loom_kernel.agents.runner",
    "loom_kernel.supervisor": "loom_kernel.ops.supervisor",
    "loom_kernel.worker": "loom_kernel.ops.worker",
    "loom_kernel.mcp_bridge": "loom_kernel.ops.mcp_bridge",
    "loom_kernel.deploy": "loom_kernel.ops.deploy",
    "loom_kernel.benchmark": "loom_kernel.ops.bench",
    "loom_kernel.bench_tools": "loom_kernel.ops.bench.tools",
}


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        warnings.warn(
            f"{spec.name} moved to {self.target}: import it from there (or the public names "
            f"from loom_kernel); the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The module is already executed at its new place."""


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = MOVED.get(fullname)
        if new is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _MovedLoader(new))


def install() -> None:
    """Make the old paths importable (once per process)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
