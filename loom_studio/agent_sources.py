"""Which agents the editor may open: those whose code is a file of the project.

An agent is editable when its module is a ``.py`` file inside the project's folder (the
folder of ``loom.toml``, which ``loom run`` puts on ``sys.path``). Agents come from two
places: the project's ``[agents.<id>]`` sections (``module = "agents.trend:TrendAgent"``)
and the agents running now (their heartbeats name their module and class, and a runtime
of this process knows its own). An agent defined in a notebook cell (module
``__main__``) or in an installed package is not editable: its source is not a project
file (reload it with ``await rt.reload(id, NewClass)``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loom_kernel import LoomConfig

__all__ = ["AgentSource", "module_file", "project_agents"]


@dataclass(frozen=True)
class AgentSource:
    """An agent and the file of its code."""

    agent: str
    module: str
    cls: str | None
    path: Path


def module_file(module: str, project_dir: Path) -> Path | None:
    """The project file that defines ``module``, or None when it is not one."""
    if not module or module == "__main__":
        return None
    base = project_dir.resolve()
    relative = Path(*module.split("."))
    candidates = [base / relative.with_suffix(".py"), base / relative / "__init__.py"]
    loaded = getattr(sys.modules.get(module), "__file__", None)
    if loaded:
        candidates.insert(0, Path(loaded).resolve())
    for path in candidates:
        if path.is_file() and path.suffix == ".py" and path.is_relative_to(base):
            return path
    return None


def project_agents(
    config: LoomConfig, running: Mapping[str, Mapping[str, Any]]
) -> dict[str, AgentSource]:
    """The editable agents, by id: ``[agents.*]`` of ``config``, then the ``running``
    ones (agent id -> its heartbeat, with ``module`` and ``class``)."""
    found: dict[str, AgentSource] = {}
    wanted: dict[str, tuple[str, str | None]] = {}
    for agent_id, section in config.agents.items():
        if section.module:
            module, _, cls = section.module.partition(":")
            wanted[agent_id] = (module, cls or None)
    for agent_id, beat in running.items():
        if beat.get("module"):
            wanted[agent_id] = (str(beat["module"]), beat.get("class"))
    for agent_id, (module, cls) in sorted(wanted.items()):
        path = module_file(module, config.project_dir)
        if path is not None:
            found[agent_id] = AgentSource(agent_id, module, cls, path)
    return found
