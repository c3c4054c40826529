"""``loom deploy``: a project's ``loom.toml`` as a container image, a Docker Compose
file and Kubernetes manifests (pure functions; the command writes the files)."""

from .plan import (
    DeployOptions,
    Group,
    Nats,
    Plan,
    nats_plan,
    nats_url_problem,
    plan_deployment,
    slug,
)
from .render import deploy_toml, render
from .serialize import to_toml, to_yaml
from .stamp import is_pristine

__all__ = [
    "DeployOptions",
    "Group",
    "Nats",
    "Plan",
    "deploy_toml",
    "is_pristine",
    "nats_plan",
    "nats_url_problem",
    "plan_deployment",
    "render",
    "slug",
    "to_toml",
    "to_yaml",
]
