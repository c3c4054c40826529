"""``loom keys``: the CURVE key pairs of a secured bus (``[bus] security = "curve"``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..config import LoomConfig
from ..security import BROKER, generate_keys, key_names, keys_folder
from .project import load_project

app = typer.Typer(help="CURVE key pairs of a secured bus (docs/security.md).", no_args_is_help=True)


@app.command("generate")
def generate(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Identities to make keys for (default: the [bus] identity)."),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="The project's loom.toml.")] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace existing keys (peers trusting them are refused).")
    ] = False,
) -> None:
    """Write key pairs into the project's keys folder ([bus] keys, default .loom/keys):
    NAME.key (public, to share) and NAME.key_secret (mode 0600, never share it). The
    broker's pair is made too when it is missing.

    Example: `loom keys generate analyst dashboard`.
    """
    settings = load_project(config)
    folder = keys_folder(settings.bus.keys, settings.project_dir)
    console = Console(stderr=True)
    wanted = list(names or [settings.bus.identity])
    if BROKER not in wanted and not (folder / f"{BROKER}.key_secret").exists():
        wanted.insert(0, BROKER)
    for name in wanted:
        pair = generate_keys(folder, name, overwrite=overwrite)
        console.print(f"[green]wrote[/] {name}: {folder / name}.key, .key_secret", soft_wrap=True)
        console.print(f"  public key {pair.public.decode()}", markup=False, soft_wrap=True)
    if settings.bus.security == "none":
        console.print('to use them, set [bus] security = "curve" in loom.toml', markup=False)


@app.command("list")
def list_keys(
    config: Annotated[Path | None, typer.Option(help="The project's loom.toml.")] = None,
) -> None:
    """The key pairs in the project's keys folder, and which ones the broker admits."""
    settings = load_project(config)
    folder = keys_folder(settings.bus.keys, settings.project_dir)
    names = key_names(folder)
    if not names:
        Console(stderr=True).print(f"no keys in {folder}: `loom keys generate`")
        return
    allowed = settings.bus.allow
    table = Table("name", "secret here", "admitted by the broker", "rules", title=str(folder))
    for name in names:
        admitted = (
            "(it is the broker)"
            if name == BROKER
            else ("yes" if allowed is None or name in allowed else "no")
        )
        secret = "yes" if (folder / f"{name}.key_secret").exists() else "no"
        plain = settings.bus.security != "curve"
        rules = "" if name == BROKER else "-" if plain else _rules(settings, name)
        table.add_row(name, secret, admitted, escape(rules))  # [acl.x] is no markup
    Console().print(table)


def _rules(settings: LoomConfig, name: str) -> str:
    """What the broker's guard lets identity ``name`` do, in a few words (docs/security.md)."""
    operators = settings.bus.operators
    said = []
    if name in (operators if operators is not None else [settings.bus.identity]):
        said.append("operator")
    said += [f"tenant {t}" for t, tenant in settings.tenants.items() if name in tenant.identities]
    if name in settings.acl:
        said.append(f"[acl.{name}]")
    return ", ".join(said) or "no ACL: anything"
