"""``python -m loom_studio [options]`` is ``loom studio [options]``, for a Python whose
scripts are not on the PATH (Jupyter starts the studio so: ``loom_studio.lab.proxy``)."""

from __future__ import annotations

import os

import typer
from rich.console import Console
from rich.markup import escape

from loom_kernel import LoomError

from .cli import studio


def main() -> None:
    """Loom errors become one red line and exit code 1, as with ``loom``."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no price map download
    try:
        typer.run(studio)
    except LoomError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
