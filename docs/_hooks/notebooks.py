"""mkdocs hook: one tutorial page per notebook of ``notebooks/``, made at build time.

Each page is the notebook as it reads: its markdown cells, its code cells, and the text its
cells printed when it was saved (an interactive view, a widget or a chart, is named rather
than shown: run the notebook to see it). The pages are never written to ``docs/``, so they
cannot go stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
MAX_OUTPUT_LINES = 20


def on_files(files: Files, config: Any) -> Files:
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        page = render(notebook)
        files.append(File.generated(config, f"tutorials/{notebook.stem}.md", content=page))
    return files


def render(notebook: Path) -> str:
    cells = json.loads(notebook.read_text())["cells"]
    parts = []
    for cell in cells:
        source = "".join(cell["source"]).rstrip()
        if cell["cell_type"] == "markdown":
            parts.append(source)
        elif cell["cell_type"] == "code" and source:
            parts.append(f"```python\n{source}\n```")
            parts.extend(output(item) for item in cell.get("outputs", []))
    where = f"notebooks/{notebook.name}"
    note = (
        f'!!! note "This page is `{where}`"\n    Run it with `jupyter lab {where}` to see '
        "the live views; `make test` runs it with nbval."
    )
    body = "\n\n".join(part for part in parts if part)
    title, _, rest = body.partition("\n")
    return f"{title}\n\n{note}\n{rest}\n" if title.startswith("# ") else f"{note}\n\n{body}\n"


def output(item: dict[str, Any]) -> str:
    if item.get("output_type") == "stream":
        text = "".join(item.get("text", ""))
    else:
        data = item.get("data", {})
        if "text/plain" not in data or any(k.startswith("application/vnd") for k in data):
            return "*(an interactive view: run the notebook to see it)*"
        text = "".join(data["text/plain"])
    lines = text.rstrip().splitlines()
    if len(lines) > MAX_OUTPUT_LINES:
        lines = [*lines[:MAX_OUTPUT_LINES], f"... ({len(lines) - MAX_OUTPUT_LINES} more lines)"]
    return "```text\n" + "\n".join(lines) + "\n```" if lines else ""
