"""``loom init`` and ``loom create agent``: a new project, and new agents in it.

Both render the templates shipped in ``loom_kernel/templates/`` (``$name`` placeholders,
:class:`string.Template`) and never overwrite a file. ``create agent`` adds its
``[agents.<id>]`` table to ``loom.toml`` as text, so the user's comments and layout stay,
and puts the file back as it was if the result does not load.
"""

from __future__ import annotations

import json
import keyword
import re
import shlex
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..agents import AGENT_ID
from ..config import CONFIG_NAME, find_config, load_config
from ..errors import ConfigError, LoomError

TEMPLATES = resources.files("loom_kernel") / "templates"

# What `loom init` writes: the file in the project, its template, what it is.
PROJECT_FILES = [
    ("loom.toml", "loom.toml.tmpl", "settings; declares [agents.greeter]"),
    ("agents/__init__.py", "agents/__init__.py.tmpl", "the agents' package"),
    ("agents/greeter.py", "agents/greeter.py.tmpl", "an agent: hello.* requests, a tool"),
    (
        "notebooks/getting_started.ipynb",
        "notebooks/getting_started.ipynb.tmpl",
        "runs the greeter and talks to it",
    ),
    ("README.md", "README.md.tmpl", "how to run the project"),
    (".gitignore", "gitignore.tmpl", "keeps .loom/ out of git"),
]

create_app = typer.Typer(
    help="Add to a Loom project: `loom create agent NAME`.", no_args_is_help=True
)


def init(
    folder: Annotated[
        Path | None, typer.Argument(help="Where to create the project (default: here).")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="The project's name (default: the folder's).")
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Accept a non-empty folder; existing files are still never overwritten."
        ),
    ] = False,
) -> None:
    """Create a ready-to-run project: loom.toml, a greeter agent, a notebook, a README.

    Examples: `loom init hello-loom`, `loom init --name "Price watch"`, `loom init . --force`.
    """
    target = (folder or Path.cwd()).resolve()
    if target.exists() and not target.is_dir():
        raise LoomError(f"{target} is a file: pass a folder to create the project in")
    existing = sorted(entry.name for entry in target.iterdir()) if target.exists() else []
    if existing and not force:
        shown = ", ".join(existing[:3]) + (", ..." if len(existing) > 3 else "")
        raise LoomError(
            f"{target} is not empty ({shown}): pick a new folder, or pass --force to add the "
            "project's files next to what is there (existing files are never overwritten)"
        )
    values = {"name": _project_name(name if name is not None else target.name)}
    created, skipped = [], []
    for relative, template, what in PROJECT_FILES:
        written = _write_new(target / relative, _render(f"project/{template}", values))
        (created if written else skipped).append((relative, what))
    _print_init_summary(target, created, skipped)


@create_app.command("agent")
def create_agent(
    name: Annotated[str, typer.Argument(help="The agent's id: letters, digits, '_' and '-'.")],
    template: Annotated[
        str, typer.Option(help="basic (a handler), producer (a run loop), tool, or llm.")
    ] = "basic",
    group: Annotated[
        str | None, typer.Option(help="Agents of one group share a process under `loom run`.")
    ] = None,
    project: Annotated[
        Path | None,
        typer.Option(help="The project folder or its loom.toml (default: the nearest one)."),
    ] = None,
) -> None:
    """Write agents/<name>.py from a template and declare \\[agents.<name>] in loom.toml.

    Examples: `loom create agent prices --template producer`, `loom create agent
    summarizer --template llm --group llm`.
    """
    _check_id(name, "agent id")
    if group is not None:
        _check_id(group, "group")
    known = agent_templates()
    if template not in known:
        raise LoomError(f"unknown template {template!r}: use one of {', '.join(known)}")
    config_path = _project_config(project)
    spec = AgentSpec.from_id(name)
    if name in load_config(config_path).agents:
        raise ConfigError(
            f"[agents.{name}] is already declared: pick another name, or edit that entry",
            path=str(config_path),
        )
    module_path = config_path.parent / "agents" / f"{spec.module}.py"
    if module_path.exists():
        raise LoomError(f"{module_path} already exists: pick another name, or remove the file")

    values = spec.values(group)
    original = _append_entry(config_path, _render(f"agent/{template}.toml.tmpl", values), name)
    if not _write_new(module_path, _render(f"agent/{template}.py.tmpl", values)):
        config_path.write_bytes(original)  # written meanwhile by someone else: undo, say so
        raise LoomError(f"{module_path} already exists: pick another name, or remove the file")
    created = [module_path]
    package = module_path.parent / "__init__.py"
    if _write_new(package, _render("project/agents/__init__.py.tmpl")):
        created.insert(0, package)
    _print_create_summary(config_path, spec, created, template)


def agent_templates() -> list[str]:
    """The names ``loom create agent --template`` accepts."""
    names = (item.name for item in (TEMPLATES / "agent").iterdir())
    return sorted(name.removesuffix(".py.tmpl") for name in names if name.endswith(".py.tmpl"))


@dataclass(frozen=True)
class AgentSpec:
    """An agent id and the Python names derived from it: ``price-feed`` lives in
    ``agents/price_feed.py`` as ``PriceFeedAgent``."""

    agent_id: str
    module: str
    class_name: str

    @classmethod
    def from_id(cls, agent_id: str) -> AgentSpec:
        # PriceFeed / price-feed -> price_feed; HTTPProbe -> http_probe
        split = r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])"
        snake = re.sub(split, "_", agent_id).replace("-", "_").lower()
        words = [word for word in snake.split("_") if word]
        camel = "".join(word[0].upper() + word[1:] for word in words)
        module = snake if snake.isidentifier() else f"agent_{snake}"  # "1st" is not a module
        if keyword.iskeyword(module):
            module += "_agent"  # `from agents.import import ...` would not parse
        class_name = camel if camel.endswith("Agent") and camel != "Agent" else camel + "Agent"
        if not class_name.isidentifier():
            class_name = "Agent" + class_name
        return cls(agent_id, module, class_name)

    def values(self, group: str | None) -> dict[str, str]:
        line = f'group = "{group}"' if group is not None else '# group = "workers"'
        group_line = f"{line:<40} # agents of one group share a process"
        return {
            "agent_id": self.agent_id,
            "module": self.module,
            "class_name": self.class_name,
            "group_line": group_line,
        }


def _render(template: str, values: dict[str, str] | None = None) -> str:
    text = (TEMPLATES / template).read_text(encoding="utf-8")
    values = values or {}
    if template.endswith(".ipynb.tmpl"):
        # placeholders sit inside JSON strings: a quote in a value must not end them
        values = {key: json.dumps(value)[1:-1] for key, value in values.items()}
    return string.Template(text).substitute(values)


def _write_new(path: Path, text: str) -> bool:
    """Write ``path`` unless it exists; True when written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as file:
            file.write(text)
    except FileExistsError:
        return False
    return True


def _append_entry(config_path: Path, entry: str, agent_id: str) -> bytes:
    """Add ``entry`` at the end of loom.toml, restoring the file if it no longer loads.

    Returns the file's original bytes.
    """
    original = config_path.read_bytes()
    text = original.decode("utf-8")
    newline = "\r\n" if "\r\n" in text else "\n"  # keep the file's line endings
    separator = "" if not text.strip() else newline if text.endswith("\n") else newline * 2
    config_path.write_bytes((text + separator + entry.replace("\n", newline)).encode("utf-8"))
    try:
        load_config(config_path)
    except ConfigError as exc:
        config_path.write_bytes(original)
        raise ConfigError(
            f"adding [agents.{agent_id}] at its end would make it invalid ({exc}), so it is "
            "left as it was: declare the agent by hand",
            path=str(config_path),
        ) from None
    return original


def _project_config(project: Path | None) -> Path:
    if project is None:
        path = find_config(Path.cwd())
    else:
        path = project if project.name == CONFIG_NAME else project / CONFIG_NAME
    if path is None or not path.is_file():
        where = project if project is not None else Path.cwd()
        raise LoomError(
            f"not a Loom project: no {CONFIG_NAME} in {where}; run `loom init` first or pass "
            "--project"
        )
    return path.resolve()


def _check_id(value: str, what: str) -> None:
    if not AGENT_ID.match(value):
        raise LoomError(
            f"bad {what} {value!r}: use letters, digits, '_' and '-', starting with a letter "
            "or digit (e.g. price-feed)"
        )


def _project_name(name: str) -> str:
    if not name.strip() or any(not char.isprintable() for char in name):
        raise LoomError(f"bad project name {name!r}: use one line of printable text")
    return name.strip()


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd())) or "."
    except ValueError:
        return str(path)


def _print_init_summary(
    target: Path, created: list[tuple[str, str]], skipped: list[tuple[str, str]]
) -> None:
    out = Console()
    table = Table(title=escape(f"Loom project in {_shown(target)}"), title_justify="left")
    table.add_column("file")
    table.add_column("what")
    for relative, what in created:
        table.add_row(f"[green]{relative}[/]", escape(what))
    for relative, _ in skipped:
        table.add_row(f"[yellow]{relative}[/]", "[yellow]already there: kept as it was[/]")
    out.print(table)
    steps = [] if target == Path.cwd().resolve() else [f"cd {shlex.quote(_shown(target))}"]
    steps += [
        "loom run                                   # start the agents of loom.toml",
        "loom status                                # in another terminal: how they do",
        "jupyter lab notebooks/getting_started.ipynb",
        "loom create agent prices --template producer",
    ]
    out.print("[bold]next:[/]")
    for step in steps:
        out.print(f"  {escape(step)}", highlight=False)


def _print_create_summary(
    config_path: Path, spec: AgentSpec, created: list[Path], template: str
) -> None:
    out = Console()
    for path in created:
        out.print(f"[green]created[/] {escape(_shown(path))}", highlight=False)
    out.print(
        f"[green]declared[/] \\[agents.{spec.agent_id}] in {escape(_shown(config_path))} "
        f"(module = agents.{spec.module}:{spec.class_name})",
        highlight=False,
    )
    if template == "llm":
        out.print('[yellow]it calls ctx.llm("default"): add \\[llm.default] to loom.toml[/]')
    out.print("[bold]next:[/] edit the agent and its settings, then `loom run`", highlight=False)
