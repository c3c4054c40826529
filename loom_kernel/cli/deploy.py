"""``loom deploy``: write the files that run the project elsewhere (image, Compose, Kubernetes)."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from ..config import LoomConfig
from ..errors import ConfigError, LoomError
from ..ops.deploy import (
    DeployOptions,
    is_pristine,
    nats_url_problem,
    plan_deployment,
    render,
    slug,
)
from .project import load_project

_LEXERS = {".yaml": "yaml", ".toml": "toml", "": "docker"}


def deploy(
    out: Annotated[
        Path | None, typer.Option(help="Folder to write into. Default: deploy/ in the project.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the files it would write; write nothing.")
    ] = False,
    show: Annotated[bool, typer.Option("--show", help="Print the files' contents too.")] = False,
    image: Annotated[
        str | None, typer.Option(help="Image name. Default: <project>:latest.")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option(help="Kubernetes namespace. Default: the project's name.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite files edited since they were generated.")
    ] = False,
    nats_url: Annotated[
        list[str] | None,
        typer.Option(
            "--nats-url",
            help="On NATS: an external cluster's server (nats://host:4222), repeatable or "
            "comma-separated; no NATS server is generated. Default: \\[bus] servers when they "
            "name another host, else a NATS server of the deployment's own.",
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="The project's loom.toml.")] = None,
) -> None:
    """Package the project to run elsewhere: a Dockerfile, compose.yaml and k8s/ manifests,
    generated from loom.toml (the bus: Loom's broker or NATS; one process per agent group;
    the studio).

    Examples: `loom deploy --dry-run`, `loom deploy --image registry.example.com/shop:1.2`,
    `loom deploy --nats-url nats://nats.internal:4222`, then
    `docker compose -f deploy/compose.yaml up --build` or `kubectl apply -k deploy/k8s`.
    """
    settings = load_project(config)
    if settings.path is None:
        raise ConfigError(
            f"no loom.toml in {Path.cwd()} or above: nothing to deploy. Run `loom deploy` "
            "in the project folder, or pass --config path/to/loom.toml"
        )
    if namespace is not None and (slug(namespace) != namespace or len(namespace) > 63):
        raise typer.BadParameter(
            f"{namespace!r} is not a Kubernetes namespace: lower case, digits and '-'",
            param_hint="--namespace",
        )
    target = (out or settings.project_dir / "deploy").resolve()
    options, notes = _options(settings, target, image, namespace, _nats_urls(nats_url or []))
    files = render(settings, options)
    console = Console(stderr=True)
    for note in (*notes, *plan_deployment(settings, options.nats_urls).warnings):
        console.print(f"[yellow]warning:[/] {escape(note)}", highlight=False)
    states = _write(files, target, console, force=force, dry_run=dry_run)
    _report(files, states, target, dry_run=dry_run, show=show)


def _write(
    files: dict[str, str], target: Path, console: Console, *, force: bool, dry_run: bool
) -> dict[str, str]:
    """Write the files that changed (none on a dry run) and return every file's state.

    Raises:
        LoomError: a file was edited since it was generated, without ``force``.
    """
    states = {path: _state(target / path, text) for path, text in files.items()}
    edited = [path for path, state in states.items() if state == "edited"]
    if edited and not force:
        message = (
            f"{', '.join(edited)} in {target} changed since `loom deploy` wrote them: "
            "keep your changes elsewhere, or pass --force to overwrite them"
        )
        if not dry_run:
            raise LoomError(message)
        console.print(f"[yellow]would refuse:[/] {escape(message)}", highlight=False)
    if not dry_run:
        for path, text in files.items():
            if states[path] != "unchanged":
                (target / path).parent.mkdir(parents=True, exist_ok=True)
                (target / path).write_text(text, encoding="utf-8")
    return states


def _nats_urls(values: list[str]) -> tuple[str, ...]:
    """``--nats-url`` values, repeated or comma-separated, each a NATS server URL."""
    urls = tuple(url.strip() for value in values for url in value.split(",") if url.strip())
    for url in urls:
        problem = nats_url_problem(url)
        if problem is not None:
            raise typer.BadParameter(problem, param_hint="--nats-url")
    return urls


def _options(
    settings: LoomConfig,
    target: Path,
    image: str | None,
    namespace: str | None,
    nats_urls: tuple[str, ...] = (),
) -> tuple[DeployOptions, list[str]]:
    """Names and paths, read from the project folder and where the files go."""
    project_dir = settings.project_dir.resolve()
    project = slug(project_dir.name) or "loom"
    notes = []
    inside = target == project_dir or project_dir in target.parents
    if not inside:
        notes.append(
            f"{target} is outside the project folder: the build context is the project "
            "folder, so build with this Dockerfile from there"
        )
    try:
        spec = f"loom-studio=={version('loom-studio')}"
    except PackageNotFoundError:
        spec = "loom-studio"
    out_in_project = target.relative_to(project_dir).as_posix() if inside else None
    options = DeployOptions(
        project=project,
        image=image or f"{project}:latest",
        namespace=namespace,
        context=Path(os.path.relpath(project_dir, target)).as_posix(),
        dockerfile=Path(os.path.relpath(target / "Dockerfile", project_dir)).as_posix(),
        ignore=(out_in_project,) if out_in_project not in (None, ".") else (),
        requirements=(project_dir / "requirements.txt").is_file(),
        loom_spec=spec,
        nats_urls=nats_urls,
    )
    return options, notes


def _state(path: Path, text: str) -> str:
    """new, unchanged, update (as generated before: safe to replace) or edited."""
    try:
        current = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return "new"
    except (OSError, UnicodeDecodeError):
        return "edited"
    if current == text:
        return "unchanged"
    return "update" if is_pristine(current) else "edited"


_STYLES = {"new": "green", "update": "cyan", "unchanged": "dim", "edited": "bold red"}


def _report(
    files: dict[str, str], states: dict[str, str], target: Path, *, dry_run: bool, show: bool
) -> None:
    out = Console()
    verb = "would write" if dry_run else "wrote"
    written = sum(state != "unchanged" for state in states.values())
    table = Table(title=f"{verb} {written} of {len(files)} files in {_near(target)}")
    table.add_column("file")
    table.add_column("bytes", justify="right")
    table.add_column("state")
    for path, text in files.items():
        state = states[path]
        label = "edited: overwritten" if state == "edited" and not dry_run else state
        table.add_row(path, f"{len(text.encode()):,}", f"[{_STYLES[state]}]{label}[/]")
    out.print(table)
    if show:
        for path, text in files.items():
            out.rule(path)
            out.print(Syntax(text, _LEXERS.get(Path(path).suffix, "text"), word_wrap=True))
    if dry_run:
        out.print("dry run: nothing written")
        return
    out.print(
        f"next: docker compose -f {_near(target / 'compose.yaml')} up --build, "
        f"or kubectl apply -k {_near(target / 'k8s')} (docs/deploy.md)",
        highlight=False,
    )


def _near(path: Path) -> str:
    """The path as typed from the working folder, when it is below it."""
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)
