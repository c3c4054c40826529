"""Generate: new agents as Python modules and ``[agents.<id>]`` entries in ``loom.toml``.

:func:`generate` writes ``agents/<id>.py`` for each new agent (from :mod:`.templates`)
and declares it in ``loom.toml`` with ``tomlkit``, which keeps the file's comments,
order and formatting. It never overwrites code: a module that exists already is the
user's (or was generated and then edited), and stays as it is; changes to existing
agents go through :mod:`.edits`. Generating twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError

from loom_kernel import ConfigError, load_config

from .templates import AgentSpec, class_name, module_name, render

__all__ = ["GenerateResult", "agent_table", "generate", "set_agent_table"]


@dataclass
class GenerateResult:
    """What :func:`generate` did, file by file (paths relative to the project)."""

    written: list[str] = field(default_factory=list)  # new modules
    kept: list[str] = field(default_factory=list)  # modules that exist: not touched
    declared: list[str] = field(default_factory=list)  # agents added to loom.toml

    @property
    def changed(self) -> bool:
        return bool(self.written or self.declared)


def generate(project: str | Path, specs: Iterable[AgentSpec]) -> GenerateResult:
    """Write the agents' modules and declare them in the project's ``loom.toml``.

    Raises:
        ValueError: a spec is incomplete, or ``loom.toml`` cannot be read (its error).
    """
    root = Path(project)
    specs = list(specs)
    for spec in specs:
        spec.check()
    result = GenerateResult()
    package = root / "agents"
    for spec in specs:
        path = package / f"{module_name(spec.id)}.py"
        relative = path.relative_to(root).as_posix()
        if path.exists():
            result.kept.append(relative)
            continue
        package.mkdir(parents=True, exist_ok=True)
        init = package / "__init__.py"
        if not init.exists():
            init.write_text('"""The project\'s agents."""\n', encoding="utf-8")
        path.write_text(render(spec), encoding="utf-8")
        result.written.append(relative)
    result.declared = _declare(root / "loom.toml", specs)
    return result


def _declare(path: Path, specs: list[AgentSpec]) -> list[str]:
    """Add ``[agents.<id>] module = ...`` for the agents not declared yet."""
    try:
        document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else None
    except TOMLKitError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc}): fix it, then generate again") from None
    document = document if document is not None else tomlkit.document()
    agents = document.get("agents")
    if agents is None:
        agents = tomlkit.table(is_super_table=True)
        document["agents"] = agents
    declared = []
    for spec in specs:
        if spec.id in agents:
            continue
        entry = tomlkit.table()
        entry["module"] = f"agents.{module_name(spec.id)}:{class_name(spec.id)}"
        agents[spec.id] = entry
        declared.append(spec.id)
    if declared:
        path.write_text(tomlkit.dumps(document), encoding="utf-8")
    return declared


def agent_table(project: str | Path, agent_id: str) -> str:
    """The ``[agents.<id>]`` table of the project's ``loom.toml``, as TOML text."""
    path = Path(project) / "loom.toml"
    document = tomlkit.parse(path.read_text(encoding="utf-8")) if path.exists() else {}
    table = document.get("agents", {}).get(agent_id)
    return tomlkit.dumps(table).strip() + "\n" if table is not None else ""


def set_agent_table(project: str | Path, agent_id: str, text: str) -> None:
    """Replace ``[agents.<id>]`` with the keys in ``text`` (TOML), the rest of the file as
    it was; checked by the kernel's own configuration loader before it is written.

    Raises:
        ValueError: ``text`` is not TOML, or the kernel refuses the result (its message).
    """
    path = Path(project) / "loom.toml"
    original = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        keys = tomlkit.parse(text)
        document = tomlkit.parse(original)
    except TOMLKitError as exc:
        raise ValueError(f"[agents.{agent_id}]: not valid TOML ({exc})") from None
    agents = document.setdefault("agents", tomlkit.table(is_super_table=True))
    table = tomlkit.table()
    for key, value in keys.items():
        table[key] = value
    agents[agent_id] = table
    candidate = path.with_name(".loom.toml.check")
    candidate.write_text(tomlkit.dumps(document), encoding="utf-8")
    try:
        load_config(candidate)
    except ConfigError as exc:
        raise ValueError(str(exc).replace(str(candidate), str(path))) from None
    finally:
        text_ok = candidate.read_text(encoding="utf-8")
        candidate.unlink()
    path.write_text(text_ok, encoding="utf-8")
