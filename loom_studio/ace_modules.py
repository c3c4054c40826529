"""The editor's Ace modules (its language mode, theme and snippets) for a notebook output.

Ace loads a mode or a theme when it is first used, from a URL it derives from the
``<script src=".../ace.js">`` that loaded it. Served by ``loom studio``, that is the studio's
own ``/static/`` folder. Embedded in a notebook's output (``inline=True``), Ace has no script
URL and asks the notebook's folder for ``mode-python.js``, which is not there. The script
below gives Ace each module it will ask for as a ``data:`` URL read from the installed Panel:
nothing is fetched, as for the rest of the inline studio.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path

import panel

__all__ = ["ace_folder", "ace_modules_script"]

_SET = """
(function loomAce(tries) {
  if (!window.ace || !window.ace.config) {  // Panel's extension not run yet in this page
    if (tries > 0) setTimeout(() => loomAce(tries - 1), 50);
    return;
  }
  const urls = %s;
  for (const [name, url] of Object.entries(urls)) window.ace.config.setModuleUrl(name, url);
})(200);
"""


def ace_folder() -> Path | None:
    """The folder of Ace's modules in the installed Panel, if it ships them."""
    bundled = Path(panel.__file__).parent / "dist" / "bundled" / "aceplot"
    found = sorted(bundled.glob("ace-builds@*/src-min-noconflict"))
    return found[-1] if found else None


def _file(folder: Path, module: str) -> Path:
    kind, _, name = module.partition("/")  # "mode/python" -> mode-python.js
    if kind == "snippets":
        return folder / "snippets" / f"{name}.js"
    return folder / f"{kind}-{name}.js"


def ace_modules_script(modules: Iterable[str]) -> str:
    """JavaScript that points Ace at ``modules`` (``"mode/python"``, ``"theme/chrome"``,
    ``"snippets/python"``) as ``data:`` URLs; "" when Panel ships no Ace."""
    folder = ace_folder()
    if folder is None:
        return ""
    urls = {}
    for module in modules:
        path = _file(folder, module)
        if path.is_file():
            encoded = base64.b64encode(path.read_bytes()).decode()
            urls[f"ace/{module}"] = f"data:text/javascript;base64,{encoded}"
    return _SET % json.dumps(urls)
