"""The plan of a deployment: the process groups, secret variables and warnings a
project's ``loom.toml`` asks for, and the options that name the generated files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

# One definition of a `${VAR}` reference: the one MCP servers expand at start.
from ...config import ENV_REFERENCE, LoomConfig
from ...errors import ConfigError

__all__ = [
    "RESERVED",
    "DeployOptions",
    "Group",
    "Plan",
    "Restart",
    "plan_deployment",
    "slug",
]

RESERVED = ("bus", "studio")  # the services every deployment has

Restart = Literal["on-failure", "always", "never"]
_PERSISTENCE: dict[str, int] = {"never": 0, "on-failure": 1, "always": 2}
_MODULE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


@dataclass(frozen=True)
class Group:
    """One process of the deployment: the agents ``loom run --group NAME`` starts."""

    name: str  # as in loom.toml: the argument of `loom run --group`
    service: str  # the Compose service and Kubernetes object name
    agents: tuple[str, ...]
    restart: Restart  # the most persistent of its agents' (as `loom run` does)


@dataclass(frozen=True)
class Plan:
    """What a ``loom.toml`` asks of a deployment."""

    groups: tuple[Group, ...]
    secrets: tuple[str, ...]  # environment variables holding keys: names only, never values
    warnings: tuple[str, ...] = ()
    keys: str | None = None  # [bus] keys when the bus is CURVE-secured, else None


@dataclass(frozen=True)
class DeployOptions:
    """Where the files go and what they name.

    ``context`` is the build context (the project folder) seen from the output folder,
    ``dockerfile`` the Dockerfile seen from the context, and ``ignore`` what the image
    leaves out besides local state (the output folder, when it is inside the project).
    """

    project: str
    image: str
    namespace: str | None = None
    context: str = ".."
    dockerfile: str = "deploy/Dockerfile"
    ignore: tuple[str, ...] = ("deploy",)
    requirements: bool = False
    loom_spec: str = "loom-studio"

    @property
    def ns(self) -> str:
        return self.namespace or self.project


def slug(text: str) -> str:
    """A Compose service and Kubernetes name: lower case, digits and '-'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:63].strip("-")


# -- the plan --------------------------------------------------------------------------


def plan_deployment(config: LoomConfig) -> Plan:
    """The process groups, secret variables and warnings of a project.

    Raises:
        ConfigError: no enabled agent, an agent without a valid ``module``, a key written
            in ``[llm.*] api_key``, or group names that clash once made Kubernetes names.
    """
    file = str(config.path) if config.path else None
    enabled = {name: agent for name, agent in config.agents.items() if agent.enabled}
    if not config.agents:
        raise ConfigError("nothing to deploy: declare agents with `loom create agent`", path=file)
    if not enabled:
        raise ConfigError("nothing to deploy: every [agents.*] has enabled = false", path=file)
    members: dict[str, list[str]] = {}
    for name, agent in enabled.items():
        if agent.module is None:
            raise ConfigError(
                f'[agents.{name}] has no module: add `module = "agents.{name}:Agent"` '
                "(module:Class) so `loom run` can start it",
                path=file,
            )
        if not _MODULE.fullmatch(agent.module):
            raise ConfigError(
                f'[agents.{name}] module = {agent.module!r}: write it as "package.module:Class"',
                path=file,
            )
        members.setdefault(agent.group or name, []).append(name)
    groups = tuple(_group(config, name, agents, file) for name, agents in members.items())
    for group in groups:
        if group.service in RESERVED:
            raise ConfigError(
                f"group {group.name!r} would be named {group.service!r}, the name of the "
                f"{group.service}'s service: rename the group ([agents.*] group, or the agent)",
                path=file,
            )
        clash = [other.name for other in groups if other.service == group.service]
        if len(clash) > 1:
            raise ConfigError(
                f"groups {' and '.join(map(repr, clash))} would both be named "
                f"{group.service!r} (Compose and Kubernetes names): rename one",
                path=file,
            )
    keys = config.bus.keys if config.bus.security == "curve" else None
    return Plan(groups, _secrets(config, file), _warnings(config), keys)


def _group(config: LoomConfig, name: str, agents: list[str], file: str | None) -> Group:
    restarts = {config.agents[agent].restart for agent in agents}
    restart = max(restarts, key=_PERSISTENCE.__getitem__)
    service = slug(name)
    if not service:
        raise ConfigError(
            f"group {name!r} makes no Compose or Kubernetes name: use letters or digits",
            path=file,
        )
    return Group(name, service, tuple(agents), restart)


def _secrets(config: LoomConfig, file: str | None) -> tuple[str, ...]:
    found: set[str] = set()
    for name, llm in config.llm.items():
        if llm.api_key is not None:
            variable = re.sub(r"\W", "_", name).upper() + "_API_KEY"
            raise ConfigError(
                f"[llm.{name}] holds its key in api_key, which a deployment would copy into "
                f'its configuration: use `api_key_env = "{variable}"` instead',
                path=file,
            )
        if llm.api_key_env:
            found.add(llm.api_key_env)
    for server in config.mcp.values():
        if server.enabled:
            for value in (*server.env.values(), *server.headers.values()):
                found.update(ENV_REFERENCE.findall(value))
    return tuple(sorted(found))


def _warnings(config: LoomConfig) -> tuple[str, ...]:
    notes = []
    endpoint = config.tracing.otlp_endpoint
    if endpoint and urlsplit(endpoint).hostname in _LOCAL_HOSTS:
        notes.append(
            f"[tracing] otlp_endpoint = {endpoint!r}: inside a container localhost is the "
            "container itself; name the collector's host instead"
        )
    for name, llm in config.llm.items():
        if llm.api_base and urlsplit(llm.api_base).hostname in _LOCAL_HOSTS:
            notes.append(f"[llm.{name}] api_base {llm.api_base!r} is localhost in a container")
    for name, server in config.mcp.items():
        if not server.enabled:
            continue
        if server.command not in (None, "python", "python3"):
            notes.append(
                f"[mcp.{name}] starts {server.command!r}: the image has Python only; "
                "install it in the Dockerfile"
            )
        if server.cwd and (server.cwd.startswith("/") or ".." in server.cwd.split("/")):
            notes.append(
                f"[mcp.{name}] cwd = {server.cwd!r} is outside the project folder, which is "
                "all the image holds"
            )
        if server.url and urlsplit(server.url).hostname in _LOCAL_HOSTS:
            notes.append(f"[mcp.{name}] url {server.url!r} is localhost in a container")
    return tuple(notes)
