"""The plan of a deployment: the process groups, secret variables, bus and warnings a
project's ``loom.toml`` asks for, and the options that name the generated files."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from ..._bus_config import NATS_SCHEMES
from ...bus.connect import uses_nats

# One definition of a `${VAR}` reference: the one MCP servers expand at start.
from ...config import ENV_REFERENCE, LoomConfig
from ...errors import ConfigError
from .layout import NATS_FILES, NATS_REPLICAS, NATS_URL, nats_note, security_note

__all__ = [
    "RESERVED",
    "DeployOptions",
    "Group",
    "Nats",
    "Plan",
    "Restart",
    "nats_plan",
    "nats_url_problem",
    "plan_deployment",
    "slug",
]

RESERVED = ("bus", "studio")  # the services every deployment has
NATS_SERVICE = "nats"  # the NATS server's service, when the deployment runs one

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
class Nats:
    """The bus of a project on NATS: where every process connects, and what of the
    security ``[bus]`` asks for the deployment passes on (never a value)."""

    servers: tuple[str, ...]  # every process's [bus] servers
    external: bool  # a cluster outside the deployment: no NATS server is generated
    files: tuple[tuple[str, str], ...] = ()  # ([bus] setting, the file as loom.toml names it)
    secrets: tuple[str, ...] = ()  # $LOOM_NATS_PASSWORD or $LOOM_NATS_TOKEN: names only


@dataclass(frozen=True)
class Plan:
    """What a ``loom.toml`` asks of a deployment."""

    groups: tuple[Group, ...]
    secrets: tuple[str, ...]  # environment variables holding keys: names only, never values
    warnings: tuple[str, ...] = ()
    keys: str | None = None  # [bus] keys when the bus is CURVE-secured, else None
    nats: Nats | None = None  # the bus when the project is on NATS, else None (ZeroMQ)

    @property
    def runs_nats(self) -> bool:
        """True when the deployment runs its own NATS server (no external cluster)."""
        return self.nats is not None and not self.nats.external

    @property
    def bus_secrets(self) -> tuple[str, ...]:
        """The variables every process that joins the bus needs (NATS's password or token)."""
        return self.nats.secrets if self.nats is not None else ()

    @property
    def all_secrets(self) -> tuple[str, ...]:
        """Every variable the deployment passes on: the agents' keys and the bus's."""
        return tuple(sorted({*self.secrets, *self.bus_secrets}))

    @property
    def bus_note(self) -> str:
        """What the generated files say about the bus's security."""
        if self.nats is not None:
            return nats_note(self.nats.external)
        return security_note(self.keys is not None)


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
    nats_urls: tuple[str, ...] = ()  # `--nats-url`: an external NATS cluster
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


def plan_deployment(config: LoomConfig, nats_urls: Sequence[str] = ()) -> Plan:
    """The process groups, secret variables, bus and warnings of a project (``nats_urls``:
    an external NATS cluster every process joins, for a project on NATS).

    Raises:
        ConfigError: no enabled agent, an agent without a valid ``module``, a key written
            in ``[llm.*] api_key``, group names that clash once made Kubernetes names, or
            ``nats_urls`` that are not NATS URLs or for a project on ZeroMQ.
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
    nats = nats_plan(config, nats_urls)
    runs_nats = nats is not None and not nats.external
    _check_names(groups, (*RESERVED, NATS_SERVICE) if runs_nats else RESERVED, file)
    keys = config.bus.keys if config.bus.security == "curve" else None
    warnings = (*_warnings(config), *_nats_warnings(config, nats))
    return Plan(groups, _secrets(config, file), warnings, keys, nats)


def _check_names(groups: tuple[Group, ...], reserved: tuple[str, ...], file: str | None) -> None:
    """Refuse a group named as a service every deployment has, or as another group."""
    for group in groups:
        if group.service in reserved:
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


# -- the bus on NATS -------------------------------------------------------------------


def nats_url_problem(url: str) -> str | None:
    """What is wrong with a NATS server URL for a deployment, or None when it is fine."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in NATS_SCHEMES or not parts.hostname:
        return f"{url!r} is not a NATS server: write nats://host:4222 or tls://host:4222"
    if parts.username is not None or parts.password is not None:
        return (
            f"{url!r} holds a user or password, which would be copied into the deployment's "
            "configuration: use [bus] user and $LOOM_NATS_PASSWORD (or credentials, nkey)"
        )
    return None


def nats_plan(config: LoomConfig, urls: Sequence[str] = ()) -> Nats | None:
    """The NATS side of a deployment, None for a project on ZeroMQ.

    ``urls`` (``loom deploy --nats-url``) name an external cluster; so do ``[bus] servers``
    (or a ``nats://`` ``[bus] url``) naming a host other than this machine. Otherwise the
    deployment runs NATS itself, as the service ``nats``.

    Raises:
        ConfigError: ``urls`` for a project on ZeroMQ, or one that is not a NATS URL.
    """
    file = str(config.path) if config.path else None
    bus = config.bus
    if not uses_nats(bus):
        if urls:
            raise ConfigError(
                "--nats-url is for a project on NATS, and this project's bus is Loom's ZeroMQ "
                'broker: set [bus] backend = "nats" first (docs/deploy.md)',
                path=file,
            )
        return None
    for url in urls:
        problem = nats_url_problem(url)
        if problem is not None:
            raise ConfigError(f"--nats-url {problem}", path=file)
    named = (bus.url,) if bus.url else tuple(bus.servers)
    external = bool(urls) or any(urlsplit(url).hostname not in _LOCAL_HOSTS for url in named)
    servers = tuple(urls) or (named if external else (NATS_URL,))
    files = tuple((name, getattr(bus, name)) for name in NATS_FILES if getattr(bus, name))
    if bus.user:
        secrets: tuple[str, ...] = ("LOOM_NATS_PASSWORD",)
    elif external and not (bus.credentials or bus.nkey):
        secrets = ("LOOM_NATS_TOKEN",)  # the one way left for a cluster that wants one
    else:
        secrets = ()
    return Nats(servers, external, files, secrets)


def _nats_warnings(config: LoomConfig, nats: Nats | None) -> list[str]:
    if nats is None:
        return []
    notes = [
        f"[bus] servers: {url!r} is localhost in a container"
        for url in nats.servers
        if urlsplit(url).hostname in _LOCAL_HOSTS
    ]
    if nats.external:
        return notes
    tls = [name for name in ("tls_ca", "tls_cert", "tls_key") if getattr(config.bus, name)]
    if tls:
        notes.append(
            f"[bus] {', '.join(tls)}: the NATS server loom deploy generates has no TLS; "
            "configure it in compose.yaml and k8s/nats.yaml, or run NATS yourself and pass "
            "--nats-url"
        )
    replicas, stream = config.bus.stream_replicas, config.bus.stream
    if config.eventlog.enabled and replicas > NATS_REPLICAS:
        notes.append(
            f"[bus] stream_replicas = {replicas}: the NATS StatefulSet (k8s/nats.yaml) runs "
            f"{NATS_REPLICAS} servers, so JetStream cannot keep {replicas} copies of stream "
            f"{stream!r}: lower it to {NATS_REPLICAS} at most, or raise the StatefulSet's "
            "replicas and routes"
        )
    if config.eventlog.enabled and replicas > 1:
        notes.append(
            f"[bus] stream_replicas = {replicas}: compose.yaml runs one NATS server, which "
            f"keeps one copy: stream {stream!r} cannot be set up there (use 1 under Compose)"
        )
    return notes
