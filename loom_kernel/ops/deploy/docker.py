"""The container image: the Dockerfile every service runs, and what it leaves out."""

from __future__ import annotations

from .layout import APP_DIR, BUS_PORT, DATA_DIR, NATS_FILES_DIR, STUDIO_PORT, UID, security_note
from .plan import DeployOptions
from .serialize import comment
from .stamp import stamped

__all__ = ["dockerfile", "dockerignore"]


def dockerfile(options: DeployOptions, *, secured: bool = False, nats: bool = False) -> str:
    """The image: Loom, the project's requirements and code, run as a non-root user
    (``nats``: the bus is NATS, which runs elsewhere; the image serves the studio only)."""
    requirements = (
        "# The project's own dependencies (its requirements.txt), in their own layer.\n"
        "COPY requirements.txt /tmp/requirements.txt\n"
        "RUN pip install -r /tmp/requirements.txt\n\n"
        if options.requirements
        else "# No requirements.txt in the project: add one for its own dependencies.\n\n"
    )
    ports = (
        f"# {BUS_PORT}-{BUS_PORT + 1}: the bus (publish, subscribe); {STUDIO_PORT}: the studio.\n"
        f"{comment(security_note(secured))}EXPOSE {BUS_PORT} {BUS_PORT + 1} {STUDIO_PORT}\n"
    )
    if nats:
        ports = (
            f"# {STUDIO_PORT}: the studio. The bus is NATS, which runs apart from this image;\n"
            f"# its credentials and TLS files are mounted at {NATS_FILES_DIR}, never copied in.\n"
            f"EXPOSE {STUDIO_PORT}\n"
        )
    return stamped(
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


def dockerignore(
    options: DeployOptions, *, keys: str | None = None, files: tuple[str, ...] = ()
) -> str:
    """What the image leaves out (``keys``: the bus's keys folder, and ``files``: NATS's
    credentials and TLS files, secrets too). BuildKit
    reads ``<Dockerfile>.dockerignore`` next to the Dockerfile: a ``.dockerignore`` here
    would not apply to the project-folder context."""
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
        *([keys.strip("/").removeprefix("./")] if keys and not keys.startswith("/") else []),
        *(path.removeprefix("./") for path in files if not path.startswith("/")),
    ]
    return stamped(
        "# Kept out of the image: local state, environments, caches, secrets and the\n"
        "# deployment files themselves.\n" + "".join(f"{pattern}\n" for pattern in patterns)
    )
