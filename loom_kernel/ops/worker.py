"""One worker process of ``loom run``: some of a project's agents, on the project's bus.

    python -m loom_kernel.ops.worker --config /path/loom.toml --agents planner,executor

Each agent comes from its ``[agents.<id>]`` entry: ``module = "agents.planner:Planner"``
is imported (the project folder is on ``sys.path``) and instantiated with the id. The
worker joins the running bus (it never starts one: the supervisor owns it) and runs
until SIGTERM or SIGINT, when every agent's ``on_stop`` runs. An agent that cannot be
loaded ends the worker with exit code 2 (:data:`EXIT_BAD_AGENT`) and one line saying what
to fix; the supervisor does not restart such a worker.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys

from ..agents import Agent
from ..config import LoomConfig, load_config
from ..errors import ConfigError, LoomError
from ..runtime import Runtime, run
from .watch import watch_and_reload

__all__ = ["EXIT_BAD_AGENT", "load_agent", "main"]

EXIT_BAD_AGENT = 2


def load_agent(config: LoomConfig, agent_id: str) -> Agent:
    """Import and instantiate ``[agents.<agent_id>]``.

    Raises:
        ConfigError: no such entry, no ``module``, or it cannot be imported or built.
    """
    entry = config.agents.get(agent_id)
    where = f"agents.{agent_id}"
    if entry is None:
        declared = ", ".join(config.agents) or "none"
        raise ConfigError(f"no [agents.{agent_id}] (declared: {declared})", path=_path(config))
    if not entry.module or ":" not in entry.module:
        raise ConfigError(
            f'[{where}] needs module = "package.module:Class" (e.g. "agents.{agent_id}:Agent")',
            path=_path(config),
        )
    module_name, _, class_name = entry.module.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ConfigError(
            f"[{where}] module {module_name!r} cannot be imported: {type(exc).__name__}: {exc}",
            path=_path(config),
        ) from None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Agent)):
        agents = [
            name
            for name, value in vars(module).items()
            if isinstance(value, type) and issubclass(value, Agent) and value is not Agent
        ]
        near = difflib.get_close_matches(class_name, agents, n=1)
        hint = (
            f" (did you mean {near[0]!r}?)"
            if near
            else f" (Agent classes there: {', '.join(sorted(agents)) or 'none'})"
        )
        what = "is not an Agent class" if cls is not None else "is not defined"
        raise ConfigError(
            f"[{where}] module = {entry.module!r}: {class_name!r} {what} in {module_name}{hint}",
            path=_path(config),
        )
    try:
        return cls(agent_id)
    except Exception as exc:
        raise ConfigError(
            f"[{where}] {class_name}({agent_id!r}) failed: {type(exc).__name__}: {exc}",
            path=_path(config),
        ) from None


def _path(config: LoomConfig) -> str | None:
    return str(config.path) if config.path else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m loom_kernel.ops.worker", description=__doc__)
    parser.add_argument("--config", required=True, help="the project's loom.toml")
    parser.add_argument("--agents", required=True, help="comma-separated agent ids")
    parser.add_argument(
        "--reload", action="store_true", help="reload agents' code when their files change"
    )
    options = parser.parse_args(argv)
    try:
        config = load_config(options.config)
        sys.path.insert(0, str(config.project_dir))
        agents = [load_agent(config, name) for name in options.agents.split(",") if name]
    except LoomError as exc:
        print(f"loom worker: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_BAD_AGENT) from None
    # Join only: the bus belongs to the supervisor, a worker must not start its own.
    joined = config.model_copy(update={"bus": config.bus.model_copy(update={"mode": "connect"})})
    alongside = None
    if options.reload:

        async def alongside(rt: Runtime) -> None:
            await watch_and_reload(rt, agents)

    run(*agents, config=joined, alongside=alongside)


if __name__ == "__main__":
    main()
