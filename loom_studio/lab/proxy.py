"""The studio behind the Jupyter server, through jupyter-server-proxy.

``pyproject.toml`` registers :func:`setup` under ``jupyter_serverproxy_servers``: on the
first request to ``<base_url>/loom-studio/``, the Jupyter server starts the studio with
its own Python (``python -m loom_studio``) on a free port of 127.0.0.1, for the project
in the server's root directory, and forwards the requests of authenticated users to it:
same origin as JupyterLab, no port to open, no token in a URL.

The studio's port is reachable by any program of this machine, so the proxy adds a
secret drawn here to every request it forwards (``request_headers_override``), and the
studio, which gets the secret in its environment, refuses every request without it
(:mod:`loom_studio.access`).
"""

from __future__ import annotations

import os
import secrets
import sys
from typing import Any

from ..access import SECRET_ENV, SECRET_HEADER

__all__ = ["NAME", "setup"]

NAME = "loom-studio"  # the URL prefix, as the entry point's name in pyproject.toml
READY_TIMEOUT = 60.0  # seconds for the studio to answer its first request (Panel loads)


def setup() -> dict[str, Any]:
    """jupyter-server-proxy's settings for the studio (called once per Jupyter server)."""
    secret = secrets.token_urlsafe(32)
    return {
        "command": command,
        "environment": {SECRET_ENV: secret},
        "request_headers_override": {SECRET_HEADER: secret},
        "absolute_url": False,  # the studio sees /...: Panel writes relative URLs
        "timeout": READY_TIMEOUT,
        # the Loom extension has its own launcher card, which opens the studio in a Lab tab
        "launcher_entry": {"enabled": False},
        "new_browser_tab": False,
    }


def command(port: int) -> list[str]:
    """The studio's command line, for the project in the Jupyter server's root directory.

    jupyter-server-proxy formats every argument (``{port}``), so braces in a path are
    doubled.
    """
    arguments = [
        sys.executable, "-m", "loom_studio", "--port", str(port), "--address", "127.0.0.1",
        "--project", project_folder(),
    ]  # fmt: skip
    return [argument.replace("{", "{{").replace("}", "}}") for argument in arguments]


def project_folder() -> str:
    """The Jupyter server's root directory (where its file browser starts), else the
    working directory."""
    from jupyter_server.serverapp import ServerApp

    if ServerApp.initialized():
        return os.path.abspath(os.path.expanduser(ServerApp.instance().root_dir))
    return os.getcwd()
