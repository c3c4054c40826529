"""What ``loom deploy`` writes: a project's ``loom.toml`` turned into a container image,
a Docker Compose file and Kubernetes manifests.

Pure functions, no file system: :func:`plan_deployment` reads what a :class:`LoomConfig`
asks for (process groups, secrets by reference, warnings) and :func:`render` returns
``{relative path: text}``; the command (``cli/deploy.py``) writes them.

Every container runs one image with another ``loom`` command (``loom bus``,
``loom run --group G``, ``loom studio``) and reads a generated copy of ``loom.toml``
(mounted at ``/app/loom.deploy.toml``, named by ``$LOOM_CONFIG``) whose ``[bus]`` joins
the broker at ``tcp://bus:7355`` and whose memory and span store live on one shared volume.
On NATS (``[bus] backend = "nats"``) there is no broker: every process joins NATS, the
``nats`` service the deployment runs or an external cluster (``--nats-url``), and the
studio reads a copy of its own (``loom.studio.toml``) that makes it the process storing
the project's spans.

    >>> files = render(config, DeployOptions(project="shop", image="shop:1.0"))
    >>> sorted(files)[:3]                                     # doctest: +SKIP
    ['Dockerfile', 'Dockerfile.dockerignore', 'compose.yaml']
"""

from __future__ import annotations

from typing import Any

from ...config import LoomConfig
from .compose import compose_file
from .docker import dockerfile, dockerignore
from .kubernetes import kubernetes
from .layout import (
    BUS_URL,
    CONFIG_PATH,
    DATA_DIR,
    KEYS_DIR,
    NATS_FILES,
    NATS_FILES_DIR,
    nats_note,
    security_note,
)
from .plan import DeployOptions, Nats, Plan, nats_plan, plan_deployment
from .serialize import comment, to_toml
from .stamp import stamped

__all__ = ["deploy_toml", "render"]


def render(config: LoomConfig, options: DeployOptions) -> dict[str, str]:
    """Every file of the deployment, ``{path relative to the output folder: text}``.

    Raises:
        ConfigError: as :func:`plan_deployment`.
    """
    plan = plan_deployment(config, options.nats_urls)
    settings = deploy_toml(config, plan.nats)
    studio = deploy_toml(config, plan.nats, studio=True) if plan.nats is not None else None
    files = {
        "Dockerfile": dockerfile(
            options, secured=plan.keys is not None, nats=plan.nats is not None
        ),
        "Dockerfile.dockerignore": dockerignore(options, keys=plan.keys, files=_files(plan)),
        "loom.deploy.toml": settings,
        **({"loom.studio.toml": studio} if studio is not None else {}),
        "compose.yaml": compose_file(plan, options),
        **kubernetes(plan, options, settings, studio),
    }
    if plan.all_secrets:
        files[".env.example"] = stamped(
            "# The keys compose.yaml passes to the agents: copy to .env next to compose.yaml\n"
            "# (or export them) and fill in. Never commit .env.\n"
            + "".join(f"{name}=\n" for name in plan.all_secrets)
        )
    return files


def _files(plan: Plan) -> tuple[str, ...]:
    return tuple(path for _, path in plan.nats.files) if plan.nats is not None else ()


def deploy_toml(config: LoomConfig, nats: Nats | None = None, *, studio: bool = False) -> str:
    """The project's settings for the deployment: the bus is the ``bus`` service (or NATS),
    memory and spans live on the shared volume; every other key is the project's own.

    ``nats`` is the project's NATS plan (:func:`nats_plan` when None); ``studio`` gives the
    studio's copy on NATS, the one process that stores the project's spans.
    """
    data = config.model_dump(exclude_unset=True, exclude_none=True)
    nats = nats or nats_plan(config)
    secured = config.bus.security == "curve"
    if nats is not None:
        data["bus"] = _nats_bus(data.get("bus", {}), nats, studio=studio)
    else:
        data["bus"] = {**data.get("bus", {}), "url": BUS_URL, "mode": "connect"}
    if secured:  # the key pairs come from a secret mounted there, never from the image
        data["bus"]["keys"] = KEYS_DIR
    data["memory"] = {**data.get("memory", {}), "path": f"{DATA_DIR}/memory.db"}
    data["tracing"] = {**data.get("tracing", {}), "store_path": f"{DATA_DIR}/traces.db"}
    ordered = {key: data[key] for key in LoomConfig.model_fields if key in data}
    return stamped(_header(nats, secured, studio) + "\n" + to_toml(ordered))


def _nats_bus(bus: dict[str, Any], nats: Nats, *, studio: bool) -> dict[str, Any]:
    """``[bus]`` on NATS: the servers, the files where they are mounted, and the mode.

    Every process but the studio only connects (mode ``connect`` stores nothing); the
    studio, in mode ``auto``, takes the host lock in its container and stores the spans
    every process publishes on the shared volume, as the broker does on ZeroMQ.
    """
    bus = {key: value for key, value in bus.items() if key != "url"}  # a URL would win
    bus.update(backend="nats", servers=list(nats.servers), mode="auto" if studio else "connect")
    for name, _ in nats.files:
        bus[name] = f"{NATS_FILES_DIR}/{NATS_FILES[name]}"
    return bus


def _header(nats: Nats | None, secured: bool, studio: bool) -> str:
    if nats is None:
        joins, note = f"the broker at {BUS_URL}", security_note(secured)
    else:
        joins, note = f"NATS at {', '.join(nats.servers)}", nats_note(nats.external)
    if studio:
        copy = (
            "The studio's copy of the project's loom.toml for the deployment, mounted at\n"
            f"{CONFIG_PATH} in the studio's container: it stores the spans every\n"
            "process publishes ([bus] mode = auto; the others' copy says connect).\n"
        )
    else:
        copy = f"The project's loom.toml for the deployment, mounted at {CONFIG_PATH}:\n"
    every = "Every" if studio else "every"
    return comment(
        f"{copy}{every} process joins {joins}; memory and spans live on the\n"
        f"volume shared by the containers ({DATA_DIR}).\n{note}"
    )
