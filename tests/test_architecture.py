"""The shape of the code, checked: layers, cycles, private names, sizes, public surface.

The layer order lives in ``pyproject.toml`` (``[tool.importlinter]``) and
``docs/ARCHITECTURE.md`` draws it; import-linter checks it here, imports under
``TYPE_CHECKING`` included. The rest (cycles between modules, private names imported
across modules, module and function sizes, the studio and demo using public names
only) is checked over the source with ``ast`` and grimp's import graph.
"""

from __future__ import annotations

import ast
import graphlib
import importlib
import json
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import grimp
import pytest

from tests.conftest import PYTHON

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("loom_kernel", "loom_studio")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
#: What the studio and the demo may import from: the kernel's curated namespaces.
PUBLIC_NAMESPACES = (
    "loom_kernel",
    "loom_kernel.config",
    "loom_kernel.errors",
    "loom_kernel.extras",
    "loom_kernel.stats",
    "loom_kernel.protocol",
    "loom_kernel.bus",
    "loom_kernel.tracing",
    "loom_kernel.messaging",
    "loom_kernel.capabilities",
    "loom_kernel.agents",
    "loom_kernel.runtime",
)


def sources(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def layers() -> list[str]:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return settings["contracts"][0]["layers"]


def test_the_layer_contract_holds() -> None:
    done = subprocess.run(
        [str(Path(PYTHON).with_name("lint-imports")), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_every_kernel_subpackage_is_a_layer_of_the_contract() -> None:
    named = {part.strip() for layer in layers() for part in layer.split("|")}
    packages = {
        f"loom_kernel.{path.name}"
        for path in (ROOT / "loom_kernel").iterdir()
        if (path / "__init__.py").exists()
    }
    modules = {
        f"loom_kernel.{path.stem}"
        for path in (ROOT / "loom_kernel").glob("*.py")
        if not path.stem.startswith("_")
    }
    assert packages | modules == named


def test_no_import_cycle_between_modules() -> None:
    graph = grimp.build_graph("loom_kernel", exclude_type_checking_imports=False)
    edges = {
        module: {
            imported
            for imported in graph.find_modules_directly_imported_by(module)
            # a package's __init__ gathers its children: that is the namespace, not a cycle
            if not module.startswith(imported + ".") and not imported.startswith(module + ".")
        }
        for module in graph.modules
        if module.startswith("loom_kernel")
    }
    try:
        tuple(graphlib.TopologicalSorter(edges).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_no_private_name_is_imported_from_another_module() -> None:
    found = []
    for path in sources(*PACKAGES):
        for node in ast.walk(ast.parse(path.read_text())):
            # `from . import _helpers` (a package's own private module) is fine
            if isinstance(node, ast.ImportFrom) and node.module is not None:
                private = [
                    alias.name
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
                if private:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {private}")
    assert not found, "private names imported across modules:\n" + "\n".join(found)


def test_modules_and_functions_stay_small() -> None:
    too_big = []
    for path in sources(*PACKAGES):
        text = path.read_text()
        lines = len(text.splitlines())
        if lines > MAX_MODULE_LINES:
            too_big.append(f"{path.relative_to(ROOT)}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    where = f"{path.relative_to(ROOT)}:{node.lineno} {node.name}()"
                    too_big.append(f"{where}: {length} lines")
    assert not too_big, (
        f"over {MAX_MODULE_LINES} lines a module or {MAX_FUNCTION_LINES} a function:\n"
        + "\n".join(too_big)
    )


def kernel_imports(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every ``from loom_kernel… import`` in a file or notebook."""
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        text = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
        text = "\n".join(line for line in text.splitlines() if not line.startswith(("%", "!")))
    else:
        text = path.read_text()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("loom_kernel"):
            yield node.lineno, node.module or "", [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("loom_kernel."):
                    yield node.lineno, alias.name, []


@pytest.mark.parametrize("folder", ["loom_studio", "demo", "notebooks", "examples"])
def test_the_studio_and_the_demo_use_only_public_names(folder: str) -> None:
    found = []
    files = [*sorted((ROOT / folder).rglob("*.py")), *sorted((ROOT / folder).rglob("*.ipynb"))]
    for path in files:
        for line, module, names in kernel_imports(path):
            where = f"{path.relative_to(ROOT)}:{line}"
            if module not in PUBLIC_NAMESPACES:
                found.append(f"{where} imports from {module} (not a public namespace)")
                continue
            public = set(getattr(importlib.import_module(module), "__all__", ()))
            found.extend(
                f"{where} imports {name} from {module} (not in its __all__)"
                for name in names
                if name not in public
            )
    assert not found, "\n".join(found)


@pytest.mark.parametrize("namespace", PUBLIC_NAMESPACES)
def test_every_public_namespace_lists_what_it_offers(namespace: str) -> None:
    module = importlib.import_module(namespace)
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"{namespace}.__all__ names what it does not define: {missing}"


ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"


def between(text: str, marker: str) -> str:
    return text.split(f"<!-- {marker}:begin -->")[1].split(f"<!-- {marker}:end -->")[0]


def test_the_layer_picture_in_architecture_md_is_the_contract() -> None:
    block = between(ARCHITECTURE.read_text(), "layers")
    drawn = [
        line[2:16].strip() for line in block.splitlines() if len(line) > 2 and line[2:3].isalpha()
    ]
    contract = [
        " | ".join(part.strip().removeprefix("loom_kernel.") for part in layer.split("|"))
        for layer in layers()
    ]
    assert drawn == contract


def layer_imports() -> str:
    """The table of what each layer imports, from grimp's graph of the code."""
    names = [part.strip() for layer in layers() for part in layer.split("|")]
    graph = grimp.build_graph("loom_kernel", exclude_type_checking_imports=False)
    found: dict[str, set[str]] = {name: set() for name in names}
    for module in graph.modules:
        here = next((n for n in names if module == n or module.startswith(n + ".")), None)
        if here is None:
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            there = next((n for n in names if imported == n or imported.startswith(n + ".")), None)
            if there is not None and there != here:
                found[here].add(there)
    rows = ["| layer | imports |", "|---|---|"]
    for name in names:
        below = sorted(found[name], key=names.index)
        short = ", ".join(f"`{n.removeprefix('loom_kernel.')}`" for n in below) or "nothing"
        rows.append(f"| `{name.removeprefix('loom_kernel.')}` | {short} |")
    return "\n".join(rows)


def test_the_layer_imports_table_in_architecture_md_is_up_to_date() -> None:
    written = between(ARCHITECTURE.read_text(), "layer-imports").strip()
    expected = layer_imports()
    assert written == expected, f"paste this into docs/ARCHITECTURE.md:\n{expected}"


def test_protocol_md_lists_every_reserved_topic() -> None:
    from loom_kernel.protocol import reserved

    text = (ROOT / "docs" / "PROTOCOL.md").read_text()
    spelled = [
        reserved.probe("<client id>", 0).replace(".0", ".<n>"),
        reserved.inbox("<client id>", "<owner>"),
        reserved.heartbeat("<id>"),
        reserved.agent_error("<id>"),
        reserved.reloaded("<id>"),
        reserved.log("<agent id>"),
        reserved.client_stats("<client id>"),
        reserved.BROKER_STATS,
        reserved.BUS_BEAT,
        reserved.EVENTLOG_RESUME,
        reserved.EVENTLOG_FETCH,
        reserved.EVENTLOG_COMMIT,
        reserved.EVENTLOG_STORE,
        reserved.EVENTLOG_STATS,
        reserved.eventlog_ack("<client id>"),
        reserved.tool_topic("<name>"),
        reserved.TOOLS_QUERY,
        reserved.TOOLS_CHANGED,
        reserved.llm_usage("<name>"),
        reserved.spans("<client id>"),
        reserved.barrier("<name>"),
        reserved.SUPERVISOR_STATE,
        reserved.SUPERVISOR_CONTROL,
        reserved.SUPERVISOR_LOGS,
        reserved.CODE_RELOAD,
    ]
    missing = [topic for topic in spelled if f"`{topic}`" not in text]
    assert not missing, f"docs/PROTOCOL.md section 7 lacks {missing}"
