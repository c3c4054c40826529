"""Optional parts of Loom: each comes with a pip extra of the ``loom-studio`` package, and
an import of one that is missing says which extra to install.

>>> require("json", "parsing").__name__
'json'
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtra

__all__ = ["EXTRAS", "require"]

PACKAGE = "loom-studio"
#: the module a feature imports -> the extra that installs it
EXTRAS = {
    "litellm": "llm",
    "mcp": "mcp",
    "nats": "nats",
    "panel": "studio",
    "bokeh": "studio",
    "anywidget": "studio",
    "ipywidgets": "studio",
    "libcst": "studio",
    "tomlkit": "studio",
    "genson": "studio",
    "jupyterlab": "jupyter",
    "jupyter_server_proxy": "jupyter",
}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``; when it is not installed, raise
    :class:`MissingExtra` naming the pip extra that brings it.

    An ImportError from inside an installed module (a bug there, or its own missing
    dependency) is raised as it is.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name is None or exc.name.split(".")[0] != top:
            raise
        extra = EXTRAS.get(top)
        fix = f"pip install '{PACKAGE}[{extra}]'" if extra else f"pip install {top}"
        raise MissingExtra(f"{feature} needs {top}, which is not installed: {fix}") from None
