"""The Docker Compose file: the broker, one service per agent group, the studio."""

from __future__ import annotations

from typing import Any

from .layout import APP_DIR, BUS_PORT, CONFIG_PATH, DATA_DIR, KEYS_DIR, STUDIO_PORT, security_note
from .plan import DeployOptions, Plan
from .serialize import yaml_file

__all__ = ["compose", "compose_file"]

_COMPOSE_RESTART = {"never": "no", "on-failure": "on-failure", "always": "always"}

_COMPOSE_HEADER = (
    "Docker Compose: the broker, one service per agent group, the studio.\n"
    "In this folder: docker compose up --build (the keys: .env.example); the studio is\n"
    f"then at http://localhost:{STUDIO_PORT}/. Ports are published on the host's loopback only.\n"
)
_KEYS_HELP = (
    f"The bus's key pairs are the project's keys folder, mounted read-only at {KEYS_DIR}:\n"
    f"the containers' user (uid 10001) must be able to read them, e.g.\n"
    "  chgrp -R 10001 {keys} && chmod 750 {keys} && chmod 640 {keys}/*\n"
)


def compose(plan: Plan, options: DeployOptions) -> dict[str, Any]:
    """The Compose project, as data."""
    common: dict[str, Any] = {
        "image": options.image,
        "build": {"context": options.context, "dockerfile": options.dockerfile},
    }
    volumes = [f"./loom.deploy.toml:{CONFIG_PATH}:ro", f"loom-data:{DATA_DIR}"]
    if plan.keys is not None:  # never in the image: a read-only mount of the keys folder
        volumes.append(f"{_keys_folder(plan.keys, options)}:{KEYS_DIR}:ro")
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


def compose_file(plan: Plan, options: DeployOptions) -> str:
    """``compose.yaml``: the Compose project, stamped, under its header."""
    header = _COMPOSE_HEADER + security_note(plan.keys is not None)
    if plan.keys is not None:
        header += "\n" + _KEYS_HELP.format(keys=_keys_folder(plan.keys, options))
    return yaml_file(compose(plan, options), header.rstrip("\n"))


def _keys_folder(keys: str, options: DeployOptions) -> str:
    """``[bus] keys`` seen from the output folder (relative ones start at the project)."""
    return keys if keys.startswith("/") else f"{options.context.rstrip('/')}/{keys}"
