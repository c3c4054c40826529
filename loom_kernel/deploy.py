"""What ``loom deploy`` writes: a project's ``loom.toml`` turned into a container image,
a Docker Compose file and Kubernetes manifests.

Pure functions, no file system: :func:`plan_deployment` reads what a :class:`LoomConfig`
asks for (process groups, secrets by reference, warnings) and :func:`render` returns
``{relative path: text}``; the command (``cli/deploy.py``) writes them.

Every container runs one image with another ``loom`` command (``loom bus``,
``loom run --group G``, ``loom studio``) and reads a generated copy of ``loom.toml``
(mounted at ``/app/loom.deploy.toml``, named by ``$LOOM_CONFIG``) whose ``[bus]`` joins
the broker at ``tcp://bus:7355`` and whose memory and span store live on one shared volume.

    >>> files = render(config, DeployOptions(project="shop", image="shop:1.0"))
    >>> sorted(files)[:3]                                     # doctest: +SKIP
    ['Dockerfile', 'Dockerfile.dockerignore', 'compose.yaml']
"""

from __future__ import annotations

import datetime
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from .config import LoomConfig
from .errors import ConfigError

# One definition of a `${VAR}` reference: the one MCP servers expand at start.
from .mcp_servers import _VARIABLE

__all__ = [
    "DeployOptions",
    "Group",
    "Plan",
    "deploy_toml",
    "is_pristine",
    "plan_deployment",
    "render",
    "slug",
    "to_toml",
    "to_yaml",
]

BUS_PORT = 7355  # publishers; subscribers use BUS_PORT + 1
STUDIO_PORT = 5006
APP_DIR = "/app"
DATA_DIR = "/var/lib/loom"
CONFIG_PATH = f"{APP_DIR}/loom.deploy.toml"
UID = 10001
BUS_URL = f"tcp://bus:{BUS_PORT}"
RESERVED = ("bus", "studio")  # the services every deployment has

SECURITY = (
    "The bus runs without CURVE authentication or topic ACLs (Loom has none yet):\n"
    f"whoever reaches ports {BUS_PORT}-{BUS_PORT + 1} reads and publishes every event. "
    "Keep it on a\nprivate network (docs/deploy.md)."
)

Restart = Literal["on-failure", "always", "never"]
_PERSISTENCE: dict[str, int] = {"never": 0, "on-failure": 1, "always": 2}
_COMPOSE_RESTART = {"never": "no", "on-failure": "on-failure", "always": "always"}
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
    return Plan(groups, _secrets(config, file), _warnings(config))


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
                found.update(_VARIABLE.findall(value))
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


# -- the files -------------------------------------------------------------------------


def render(config: LoomConfig, options: DeployOptions) -> dict[str, str]:
    """Every file of the deployment, ``{path relative to the output folder: text}``.

    Raises:
        ConfigError: as :func:`plan_deployment`.
    """
    plan = plan_deployment(config)
    settings = deploy_toml(config)
    files = {
        "Dockerfile": dockerfile(options),
        "Dockerfile.dockerignore": dockerignore(options),
        "loom.deploy.toml": settings,
        "compose.yaml": _yaml_file(compose(plan, options), _COMPOSE_HEADER),
        **kubernetes(plan, options, settings),
    }
    if plan.secrets:
        files[".env.example"] = _stamped(
            "# The keys compose.yaml passes to the agents: copy to .env next to compose.yaml\n"
            "# (or export them) and fill in. Never commit .env.\n"
            + "".join(f"{name}=\n" for name in plan.secrets)
        )
    return files


def deploy_toml(config: LoomConfig) -> str:
    """The project's settings for the deployment: the bus is the ``bus`` service, memory
    and spans live on the shared volume; every other key is the project's own."""
    data = config.model_dump(exclude_unset=True, exclude_none=True)
    data["bus"] = {**data.get("bus", {}), "url": BUS_URL, "mode": "connect"}
    data["memory"] = {**data.get("memory", {}), "path": f"{DATA_DIR}/memory.db"}
    data["tracing"] = {**data.get("tracing", {}), "store_path": f"{DATA_DIR}/traces.db"}
    ordered = {key: data[key] for key in LoomConfig.model_fields if key in data}
    header = _comment(
        f"The project's loom.toml for the deployment, mounted at {CONFIG_PATH}:\n"
        f"every process joins the broker at {BUS_URL}; memory and spans live on the\n"
        f"volume shared by the containers ({DATA_DIR}).\n{SECURITY}"
    )
    return _stamped(header + "\n" + to_toml(ordered))


def dockerfile(options: DeployOptions) -> str:
    """The image: Loom, the project's requirements and code, run as a non-root user."""
    requirements = (
        "# The project's own dependencies (its requirements.txt), in their own layer.\n"
        "COPY requirements.txt /tmp/requirements.txt\n"
        "RUN pip install -r /tmp/requirements.txt\n\n"
        if options.requirements
        else "# No requirements.txt in the project: add one for its own dependencies.\n\n"
    )
    ports = (
        f"# {BUS_PORT}-{BUS_PORT + 1}: the bus (publish, subscribe); {STUDIO_PORT}: the studio.\n"
        f"{_comment(SECURITY)}EXPOSE {BUS_PORT} {BUS_PORT + 1} {STUDIO_PORT}\n"
    )
    return _stamped(
        f"# The image of {options.project}: Loom and the project's code. Every service runs it\n"
        "# with another `loom` command (compose.yaml, k8s/). Build it from the project folder.\n"
        "FROM python:3.11-slim\n\n"
        "ENV PYTHONDONTWRITEBYTECODE=1 \\\n"
        "    PYTHONUNBUFFERED=1 \\\n"
        "    PIP_NO_CACHE_DIR=1 \\\n"
        "    PIP_DISABLE_PIP_VERSION_CHECK=1\n\n"
        "# Loom itself; --build-arg LOOM_SPEC=... installs another version, a wheel or a URL.\n"
        f'ARG LOOM_SPEC="{options.loom_spec}"\n'
        'RUN pip install "${LOOM_SPEC}"\n\n'
        f"{requirements}"
        "# The project belongs to a user without privileges: Loom writes .loom/ in it, and\n"
        f"# memory and spans in {DATA_DIR} (a volume shared by the containers).\n"
        f"RUN groupadd --gid {UID} loom \\\n"
        f"    && useradd --uid {UID} --gid {UID} --create-home loom \\\n"
        f"    && mkdir -p {APP_DIR} {DATA_DIR} \\\n"
        f"    && chown loom:loom {APP_DIR} {DATA_DIR}\n"
        f"WORKDIR {APP_DIR}\n"
        f"COPY --chown={UID}:{UID} . {APP_DIR}\n"
        f"USER {UID}:{UID}\n\n"
        f"{ports}"
        'ENTRYPOINT ["loom"]\n'
        'CMD ["--help"]\n'
    )


def dockerignore(options: DeployOptions) -> str:
    """What the image leaves out. BuildKit reads ``<Dockerfile>.dockerignore`` next to the
    Dockerfile: a ``.dockerignore`` here would not apply to the project-folder context."""
    patterns = [
        ".git",
        ".loom",
        ".venv",
        "venv",
        "**/__pycache__",
        "**/*.py[co]",
        "**/.pytest_cache",
        "**/.ipynb_checkpoints",
        ".env",
        ".env.*",
        *options.ignore,
    ]
    return _stamped(
        "# Kept out of the image: local state, environments, caches, secrets and the\n"
        "# deployment files themselves.\n" + "".join(f"{pattern}\n" for pattern in patterns)
    )


_COMPOSE_HEADER = (
    "Docker Compose: the broker, one service per agent group, the studio.\n"
    "In this folder: docker compose up --build (the keys: .env.example); the studio is\n"
    f"then at http://localhost:{STUDIO_PORT}/. Ports are published on the host's loopback only.\n"
    + SECURITY
)


def compose(plan: Plan, options: DeployOptions) -> dict[str, Any]:
    """The Compose project, as data."""
    common: dict[str, Any] = {
        "image": options.image,
        "build": {"context": options.context, "dockerfile": options.dockerfile},
    }
    volumes = [f"./loom.deploy.toml:{CONFIG_PATH}:ro", f"loom-data:{DATA_DIR}"]
    probe = (
        "import socket\n"
        f"for port in ({BUS_PORT}, {BUS_PORT + 1}):\n"
        "    socket.create_connection(('127.0.0.1', port), timeout=2).close()\n"
    )
    after_bus = {"bus": {"condition": "service_healthy"}}
    services: dict[str, Any] = {
        "bus": {
            **common,
            "command": ["bus", "--url", f"tcp://0.0.0.0:{BUS_PORT}"],
            "environment": {"LOOM_CONFIG": CONFIG_PATH},
            "volumes": volumes,
            # a fresh .loom/ per start: a crashed bus leaves bus.json naming pid 1, alive
            # again in the restarted container
            "tmpfs": [f"{APP_DIR}/.loom:mode=1777"],
            "ports": [f"127.0.0.1:{BUS_PORT}-{BUS_PORT + 1}:{BUS_PORT}-{BUS_PORT + 1}"],
            "healthcheck": {
                "test": ["CMD", "python", "-c", probe],
                "interval": "5s",
                "timeout": "5s",
                "retries": 12,
                "start_period": "10s",
            },
            "restart": "unless-stopped",
        }
    }
    secrets = {name: f"${{{name}}}" for name in plan.secrets}
    for group in plan.groups:
        services[group.service] = {
            **common,
            "command": ["run", "--group", group.name],
            "environment": {"LOOM_CONFIG": CONFIG_PATH, **secrets},
            "volumes": volumes,
            "depends_on": after_bus,
            "restart": _COMPOSE_RESTART[group.restart],
        }
    services["studio"] = {
        **common,
        "command": ["studio", "--address", "0.0.0.0", "--port", str(STUDIO_PORT)],
        "environment": {"LOOM_CONFIG": CONFIG_PATH},
        "volumes": volumes,
        "ports": [f"127.0.0.1:{STUDIO_PORT}:{STUDIO_PORT}"],
        "depends_on": after_bus,
        "restart": "unless-stopped",
    }
    return {"name": options.project, "services": services, "volumes": {"loom-data": {}}}


# -- Kubernetes ------------------------------------------------------------------------


def kubernetes(plan: Plan, options: DeployOptions, settings: str) -> dict[str, str]:
    """The manifests under ``k8s/``: apply them with ``kubectl apply -k k8s``."""
    k8s = _Kubernetes(plan, options, settings)
    files = {
        "namespace.yaml": [k8s.namespace()],
        "configmap.yaml": [k8s.config_map()],
        "volume.yaml": [k8s.volume()],
        "networkpolicy.yaml": [k8s.network_policy()],
        "bus.yaml": [
            k8s.bus(),
            k8s.service("bus", "bus", [("publish", BUS_PORT), ("subscribe", BUS_PORT + 1)]),
        ],
        "studio.yaml": [k8s.studio(), k8s.service("studio", "studio", [("http", STUDIO_PORT)])],
        **{f"agents-{group.service}.yaml": [k8s.group(group)] for group in plan.groups},
    }
    rendered = {f"k8s/{name}": _yaml_file(docs, k8s.header(name)) for name, docs in files.items()}
    rendered["k8s/kustomization.yaml"] = _yaml_file(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": list(files),
        },
        "Apply with: kubectl apply -k k8s (secrets.example.yaml is not applied: see it).",
    )
    if plan.secrets:
        rendered["k8s/secrets.example.yaml"] = _yaml_file([k8s.secret_example()], k8s.secret_help())
    return rendered


class _Kubernetes:
    """Builds the manifests of one deployment (names, labels and pod specs in one place)."""

    def __init__(self, plan: Plan, options: DeployOptions, settings: str):
        self.plan = plan
        self.options = options
        self.project = options.project
        self.checksum = hashlib.sha256(settings.encode()).hexdigest()[:16]
        self.settings = settings

    def header(self, name: str) -> str:
        security = f"\n{SECURITY}" if name in ("bus.yaml", "networkpolicy.yaml") else ""
        return f"Kubernetes: {name} of project {self.project}.{security}"

    def labels(self, name: str, component: str) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": name,
            "app.kubernetes.io/instance": self.project,
            "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": self.project,
            "app.kubernetes.io/managed-by": "loom-deploy",
        }

    def selector(self, name: str) -> dict[str, str]:
        return {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": self.project}

    def metadata(self, name: str, component: str, label: str | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.options.ns,
            "labels": self.labels(label or name, component),
        }

    def namespace(self) -> dict[str, Any]:
        meta = self.metadata(self.options.ns, "namespace", self.project)
        del meta["namespace"]
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta}

    def config_map(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": self.metadata(f"{self.project}-config", "config", self.project),
            "data": {"loom.toml": self.settings},
        }

    def volume(self) -> dict[str, Any]:
        # SQLite (memory, spans) shares a file between processes of one machine only: the
        # claim is ReadWriteOnce and every pod is scheduled on the bus's node
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": self.metadata(f"{self.project}-data", "storage", self.project),
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        }

    def network_policy(self) -> dict[str, Any]:
        ours = {"matchLabels": {"app.kubernetes.io/part-of": self.project}}
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": self.metadata(f"{self.project}-internal", "network", self.project),
            "spec": {
                "podSelector": ours,
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": ours}]}],
            },
        }

    def service(self, name: str, target: str, ports: list[tuple[str, int]]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": self.metadata(name, target),
            "spec": {
                "selector": self.selector(target),
                "ports": [
                    {"name": port_name, "port": port, "targetPort": port}
                    for port_name, port in ports
                ],
            },
        }

    def deployment(self, name: str, component: str, pod: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": self.metadata(name, component),
            "spec": {
                "replicas": 1,
                # one copy at a time: two brokers would split the bus, two copies of an
                # agent would handle every event twice
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": self.selector(name)},
                "template": self.template(name, component, pod),
            },
        }

    def template(self, name: str, component: str, pod: dict[str, Any]) -> dict[str, Any]:
        return {
            "metadata": {
                "labels": self.labels(name, component),
                # a changed loom.toml rolls the pods on the next apply
                "annotations": {"checksum/config": self.checksum},
            },
            "spec": pod,
        }

    def pod(
        self, args: list[str], *, env: list[dict[str, Any]] | None = None, **extra: Any
    ) -> dict[str, Any]:
        container: dict[str, Any] = {
            "name": "loom",
            "image": self.options.image,
            "imagePullPolicy": "IfNotPresent",
            "args": args,
            "env": [{"name": "LOOM_CONFIG", "value": CONFIG_PATH}, *(env or [])],
            "volumeMounts": [
                {
                    "name": "config",
                    "mountPath": CONFIG_PATH,
                    "subPath": "loom.toml",
                    "readOnly": True,
                },
                {"name": "data", "mountPath": DATA_DIR},
            ],
            **extra,
        }
        return {
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": UID,
                "runAsGroup": UID,
                "fsGroup": UID,
            },
            "containers": [container],
            "volumes": [
                {"name": "config", "configMap": {"name": f"{self.project}-config"}},
                {"name": "data", "persistentVolumeClaim": {"claimName": f"{self.project}-data"}},
            ],
        }

    def near_bus(self, pod: dict[str, Any]) -> dict[str, Any]:
        """A pod that waits for the bus and runs on its node (the shared SQLite volume)."""
        wait = (
            "import socket, time\n"
            "while True:\n"
            "    try:\n"
            f"        socket.create_connection(('bus', {BUS_PORT}), timeout=2).close()\n"
            "        break\n"
            "    except OSError:\n"
            f"        print('waiting for the bus at bus:{BUS_PORT}', flush=True)\n"
            "        time.sleep(1)\n"
        )
        affinity = {
            "podAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "labelSelector": {"matchLabels": self.selector("bus")},
                        "topologyKey": "kubernetes.io/hostname",
                    }
                ]
            }
        }
        init = {
            "name": "wait-for-bus",
            "image": self.options.image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["python", "-c", wait],
        }
        return {**pod, "initContainers": [init], "affinity": affinity}

    def bus(self) -> dict[str, Any]:
        probe = {"tcpSocket": {"port": BUS_PORT}, "periodSeconds": 10}
        pod = self.pod(
            ["bus", "--url", f"tcp://0.0.0.0:{BUS_PORT}"],
            ports=[
                {"name": "publish", "containerPort": BUS_PORT},
                {"name": "subscribe", "containerPort": BUS_PORT + 1},
            ],
            readinessProbe={**probe, "periodSeconds": 2},
            livenessProbe=probe,
        )
        return self.deployment("bus", "bus", pod)

    def studio(self) -> dict[str, Any]:
        pod = self.pod(
            ["studio", "--address", "0.0.0.0", "--port", str(STUDIO_PORT)],
            ports=[{"name": "http", "containerPort": STUDIO_PORT}],
            readinessProbe={"tcpSocket": {"port": STUDIO_PORT}, "periodSeconds": 5},
        )
        return self.deployment("studio", "studio", self.near_bus(pod))

    def group(self, group: Group) -> dict[str, Any]:
        env = [
            {
                "name": name,
                # optional: a missing key fails the call that needs it, naming the variable
                "valueFrom": {
                    "secretKeyRef": {
                        "name": f"{self.project}-secrets",
                        "key": name,
                        "optional": True,
                    }
                },
            }
            for name in self.plan.secrets
        ]
        pod = self.near_bus(self.pod(["run", "--group", group.name], env=env))
        # `loom run` restarts its worker by the group's policy; the Deployment restarts
        # `loom run` itself, should it exit
        return self.deployment(group.service, "agents", pod)

    def secret_example(self) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": self.metadata(f"{self.project}-secrets", "secrets", self.project),
            "type": "Opaque",
            "stringData": {name: "" for name in self.plan.secrets},
        }

    def secret_help(self) -> str:
        literals = "".join(f" \\\n    --from-literal={name}=..." for name in self.plan.secrets)
        return (
            "The keys the agents read, by name. Create the Secret once, outside version "
            "control:\n"
            f"  kubectl create secret generic {self.project}-secrets "
            f"--namespace {self.options.ns}{literals}\n"
            "or fill the values below in a copy and apply that copy. Not part of\n"
            "kustomization.yaml: applying this file as it is would empty the keys."
        )


# -- text ------------------------------------------------------------------------------

_STAMP = re.compile(r"^# Generated by `loom deploy` \(digest ([0-9a-f]{16})\)")


def _stamped(body: str) -> str:
    """The text with a first line naming its digest: ``loom deploy`` overwrites a file
    only while it is as generated (no '=' in it: a Dockerfile's first line may be a
    parser directive)."""
    digest = hashlib.sha256(body.encode()).hexdigest()[:16]
    return (
        f"# Generated by `loom deploy` (digest {digest}) from the project's loom.toml:\n"
        f"# change loom.toml and run `loom deploy` again rather than editing this file.\n{body}"
    )


def is_pristine(text: str) -> bool:
    """True when a generated file is as ``loom deploy`` wrote it (its digest holds)."""
    first, _, rest = text.partition("\n")
    match = _STAMP.match(first)
    if match is None:
        return False
    _, _, body = rest.partition("\n")
    return hashlib.sha256(body.encode()).hexdigest()[:16] == match.group(1)


def _comment(text: str) -> str:
    return "".join(f"# {line}\n" if line else "#\n" for line in text.splitlines())


def _yaml_file(documents: Any, header: str) -> str:
    docs = documents if isinstance(documents, list) else [documents]
    return _stamped(_comment(header) + "---\n".join(to_yaml(doc) for doc in docs))


# YAML: plain scalars only where every YAML 1.1 and 1.2 reader (PyYAML, Go's, Compose's)
# reads a string; everything else is a JSON string, which is valid YAML.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}
_UNSAFE_IN_QUOTES = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")
_UNSAFE_IN_BLOCK = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff]")


def to_yaml(value: Any) -> str:
    """A YAML document for dicts, lists, strings, numbers, booleans and None."""
    return "\n".join(_yaml_lines(value, 0)) + "\n"


def _yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = repr(value)
        special = {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}
        if text in special:
            return special[text]
        mantissa, e, exponent = text.partition("e")
        # YAML 1.1 floats have a '.' in the mantissa: 1e+16 would read as a string
        return mantissa + ("" if "." in mantissa else ".0") + e + exponent
    if isinstance(value, str):
        plain = _PLAIN.fullmatch(value) and value.lower() not in _WORDS
        return value if plain else _yaml_string(value)
    if value == {} or value == []:
        return json.dumps(value)
    raise TypeError(f"no YAML for {type(value).__name__}")


def _yaml_string(text: str) -> str:
    """A double-quoted scalar: a JSON string, with what YAML counts as line breaks or
    non-printable escaped too."""
    quoted = json.dumps(text, ensure_ascii=False)
    return _UNSAFE_IN_QUOTES.sub(lambda m: f"\\u{ord(m.group()):04x}", quoted)


def _is_block(value: Any) -> bool:
    """A multi-line string written as a literal block (``|``), which keeps one final newline."""
    return (
        isinstance(value, str)
        and value.endswith("\n")
        and not value.endswith("\n\n")
        and not value[:1].isspace()
        and not _UNSAFE_IN_BLOCK.search(value)
    )


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict) and value:
        lines = []
        for key, item in value.items():
            lines.extend(_yaml_entry(f"{pad}{_yaml_scalar(str(key))}:", item, indent))
        return lines
    if isinstance(value, list) and value:
        lines = []
        for item in value:
            lines.extend(_yaml_entry(f"{pad}-", item, indent, item=True))
        return lines
    return [pad + _yaml_scalar(value)]


def _yaml_entry(lead: str, value: Any, indent: int, *, item: bool = False) -> list[str]:
    if _is_block(value):
        inner = " " * (indent + 2)
        return [f"{lead} |", *(inner + line if line else "" for line in value[:-1].split("\n"))]
    if isinstance(value, dict | list) and value:
        nested = _yaml_lines(value, indent + 2)
        if item:  # "- key: value" on the dash's line
            return [f"{lead} {nested[0].lstrip()}", *nested[1:]]
        return [lead, *nested]
    return [f"{lead} {_yaml_scalar(value)}"]


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def to_toml(data: dict[str, Any]) -> str:
    """TOML for a parsed ``loom.toml``: tables as sections, arrays and inline tables inline."""
    return "\n".join(_toml_table(data, ())).lstrip("\n") + "\n"


def _toml_table(data: dict[str, Any], path: tuple[str, ...]) -> list[str]:
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and v is not None}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    lines = []
    if path and (scalars or not tables):
        lines += ["", f"[{'.'.join(map(_toml_key, path))}]"]
    lines += [f"{_toml_key(key)} = {_toml_value(value)}" for key, value in scalars.items()]
    for key, table in tables.items():
        lines += _toml_table(table, (*path, key))
    return lines


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    # a JSON string is a TOML basic string, but for DEL, which TOML wants escaped
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return {"inf": "inf", "-inf": "-inf", "nan": "nan"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None)
        return "{" + ", ".join(pairs) + "}"
    raise TypeError(f"no TOML for {type(value).__name__}")
