"""The Docker Compose file: the bus (Loom's broker, or a NATS server), one service per
agent group, the studio."""

from __future__ import annotations

from typing import Any

from .layout import (
    APP_DIR,
    BUS_PORT,
    CONFIG_PATH,
    DATA_DIR,
    KEYS_DIR,
    NATS_FILES,
    NATS_FILES_DIR,
    NATS_IMAGE,
    NATS_MONITOR_PORT,
    NATS_PORT,
    STUDIO_PORT,
)
from .plan import DeployOptions, Plan
from .serialize import yaml_file

__all__ = ["compose", "compose_file"]

_COMPOSE_RESTART = {"never": "no", "on-failure": "on-failure", "always": "always"}

_COMPOSE_HEADER = (
    "Docker Compose: {services}.\n"
    "In this folder: docker compose up --build (the keys: .env.example); the studio is\n"
    f"then at http://localhost:{STUDIO_PORT}/. Ports are published on the host's loopback only.\n"
)
_KEYS_HELP = (
    f"The bus's key pairs are the project's keys folder, mounted read-only at {KEYS_DIR}:\n"
    f"the containers' user (uid 10001) must be able to read them, e.g.\n"
    "  chgrp -R 10001 {keys} && chmod 750 {keys} && chmod 640 {keys}/*\n"
)
_NATS_FILES_HELP = (
    "The NATS files of [bus] ({settings}) are mounted read-only at\n"
    f"{NATS_FILES_DIR}: the containers' user (uid 10001) must be able to read them, e.g.\n"
    "  chgrp 10001 {files} && chmod 640 {files}\n"
)
_HEALTHCHECK = {"interval": "5s", "timeout": "5s", "retries": 12}


def compose(plan: Plan, options: DeployOptions) -> dict[str, Any]:
    """The Compose project, as data."""
    common: dict[str, Any] = {
        "image": options.image,
        "build": {"context": options.context, "dockerfile": options.dockerfile},
    }
    volumes = [f"./loom.deploy.toml:{CONFIG_PATH}:ro", f"loom-data:{DATA_DIR}"]
    if plan.keys is not None:  # never in the image: a read-only mount of the keys folder
        volumes.append(f"{_from_output(plan.keys, options)}:{KEYS_DIR}:ro")
    for name, path in plan.nats.files if plan.nats is not None else ():  # nor these
        volumes.append(f"{_from_output(path, options)}:{NATS_FILES_DIR}/{NATS_FILES[name]}:ro")
    services: dict[str, Any] = {}
    if plan.nats is None:
        services["bus"] = _bus(common, volumes)
    elif plan.runs_nats:
        services["nats"] = _nats()
    bus = next(iter(services), None)  # the service the others wait for, if any
    after_bus = {"depends_on": {bus: {"condition": "service_healthy"}}} if bus else {}
    secrets = {name: f"${{{name}}}" for name in plan.secrets}
    joining = {name: f"${{{name}}}" for name in plan.bus_secrets}  # every process's
    for group in plan.groups:
        services[group.service] = {
            **common,
            "command": ["run", "--group", group.name],
            "environment": {"LOOM_CONFIG": CONFIG_PATH, **secrets, **joining},
            "volumes": volumes,
            **after_bus,
            "restart": _COMPOSE_RESTART[group.restart],
        }
    studio_volumes = volumes
    if plan.nats is not None:  # the studio's own copy: it stores the spans
        studio_volumes = [f"./loom.studio.toml:{CONFIG_PATH}:ro", *volumes[1:]]
    services["studio"] = {
        **common,
        "command": ["studio", "--address", "0.0.0.0", "--port", str(STUDIO_PORT)],
        "environment": {"LOOM_CONFIG": CONFIG_PATH, **joining},
        "volumes": studio_volumes,
        "ports": [f"127.0.0.1:{STUDIO_PORT}:{STUDIO_PORT}"],
        **after_bus,
        "restart": "unless-stopped",
    }
    named = {"loom-data": {}, **({"nats-data": {}} if plan.runs_nats else {})}
    return {"name": options.project, "services": services, "volumes": named}


def _bus(common: dict[str, Any], volumes: list[str]) -> dict[str, Any]:
    """Loom's broker (``loom bus``), healthy once both its ports answer."""
    probe = (
        "import socket\n"
        f"for port in ({BUS_PORT}, {BUS_PORT + 1}):\n"
        "    socket.create_connection(('127.0.0.1', port), timeout=2).close()\n"
    )
    return {
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
            **_HEALTHCHECK,
            "start_period": "10s",
        },
        "restart": "unless-stopped",
    }


def _nats() -> dict[str, Any]:
    """One NATS server with JetStream (the event log's stream) on a named volume, healthy
    once its monitor answers ``/healthz`` (busybox's wget: the image has no curl)."""
    health = f"http://127.0.0.1:{NATS_MONITOR_PORT}/healthz"
    return {
        "image": NATS_IMAGE,
        "command": ["-js", "-sd", "/data", "-m", str(NATS_MONITOR_PORT)],
        "volumes": ["nats-data:/data"],
        "ports": [f"127.0.0.1:{NATS_PORT}:{NATS_PORT}"],
        "healthcheck": {
            "test": ["CMD", "wget", "-q", "--spider", health],
            **_HEALTHCHECK,
            "start_period": "5s",
        },
        "restart": "unless-stopped",
    }


def compose_file(plan: Plan, options: DeployOptions) -> str:
    """``compose.yaml``: the Compose project, stamped, under its header."""
    if plan.nats is None:
        services = "the broker, one service per agent group, the studio"
    elif plan.runs_nats:
        services = "NATS (JetStream on), one service per agent group, the studio"
    else:
        services = (
            "one service per agent group and the studio; the bus is an external\n"
            "NATS cluster ([bus] servers in loom.deploy.toml)"
        )
    header = _COMPOSE_HEADER.format(services=services) + plan.bus_note
    if plan.keys is not None:
        header += "\n" + _KEYS_HELP.format(keys=_from_output(plan.keys, options))
    if plan.nats is not None and plan.nats.files:
        files = " ".join(_from_output(path, options) for _, path in plan.nats.files)
        settings = ", ".join(name for name, _ in plan.nats.files)
        header += "\n" + _NATS_FILES_HELP.format(settings=settings, files=files)
    return yaml_file(compose(plan, options), header.rstrip("\n"))


def _from_output(path: str, options: DeployOptions) -> str:
    """A path of ``[bus]`` seen from the output folder (relative ones start at the project)."""
    return path if path.startswith("/") else f"{options.context.rstrip('/')}/{path}"
