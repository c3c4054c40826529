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

from ...config import LoomConfig
from .compose import compose_file
from .docker import dockerfile, dockerignore
from .kubernetes import kubernetes
from .layout import BUS_URL, CONFIG_PATH, DATA_DIR, KEYS_DIR, security_note
from .plan import DeployOptions, plan_deployment
from .serialize import comment, to_toml
from .stamp import stamped

__all__ = ["deploy_toml", "render"]


def render(config: LoomConfig, options: DeployOptions) -> dict[str, str]:
    """Every file of the deployment, ``{path relative to the output folder: text}``.

    Raises:
        ConfigError: as :func:`plan_deployment`.
    """
    plan = plan_deployment(config)
    settings = deploy_toml(config)
    files = {
        "Dockerfile": dockerfile(options, secured=plan.keys is not None),
        "Dockerfile.dockerignore": dockerignore(options, keys=plan.keys),
        "loom.deploy.toml": settings,
        "compose.yaml": compose_file(plan, options),
        **kubernetes(plan, options, settings),
    }
    if plan.secrets:
        files[".env.example"] = stamped(
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
    secured = config.bus.security == "curve"
    if secured:  # the key pairs come from a secret mounted there, never from the image
        data["bus"]["keys"] = KEYS_DIR
    data["memory"] = {**data.get("memory", {}), "path": f"{DATA_DIR}/memory.db"}
    data["tracing"] = {**data.get("tracing", {}), "store_path": f"{DATA_DIR}/traces.db"}
    ordered = {key: data[key] for key in LoomConfig.model_fields if key in data}
    header = comment(
        f"The project's loom.toml for the deployment, mounted at {CONFIG_PATH}:\n"
        f"every process joins the broker at {BUS_URL}; memory and spans live on the\n"
        f"volume shared by the containers ({DATA_DIR}).\n{security_note(secured)}"
    )
    return stamped(header + "\n" + to_toml(ordered))
