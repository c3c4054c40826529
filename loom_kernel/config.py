"""``loom.toml``: the one loader, mapping the file onto typed settings.

Every section is a pydantic model that forbids unknown keys, so a typo fails
loudly with the nearest valid key. :func:`load_config` finds the file (an explicit
path, ``$LOOM_CONFIG``, or the nearest ``loom.toml`` upward from the working
directory) and returns a :class:`LoomConfig`; no file at all means defaults.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import ConfigError

__all__ = ["BusConfig", "LoomConfig", "RuntimeConfig", "find_config", "load_config"]

CONFIG_NAME = "loom.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BusConfig(_Section):
    """``[bus]``: where the bus is and how it behaves."""

    url: str | None = Field(
        default=None,
        description="Bus address, e.g. 'tcp://127.0.0.1:7355'. Unset: the project's running "
        "bus found through .loom/bus.json, or an embedded one.",
    )
    mode: Literal["auto", "embedded", "connect"] = Field(
        default="auto",
        description="auto: join a running bus, else start one in-process; embedded: always "
        "start one in-process; connect: only join, fail if none answers.",
    )
    hwm: int = Field(
        default=100_000, ge=1000, description="ZeroMQ high-water mark (messages) per socket."
    )
    connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for the bus to answer."
    )


class RuntimeConfig(_Section):
    """``[runtime]``: agent supervision inside one process."""

    heartbeat_interval: float = Field(
        default=1.0, gt=0, description="Seconds between heartbeats and statistics."
    )
    idle_after: float = Field(
        default=5.0, gt=0, description="Seconds without activity before an agent is 'idle'."
    )
    stall_after: float = Field(
        default=10.0,
        gt=0,
        description="Seconds a handler may run, or a mailbox wait, before the agent is 'stalled'.",
    )
    max_hops: int = Field(
        default=32, ge=1, description="Events whose causal chain is longer are dropped (loops)."
    )
    mailbox_size: int = Field(
        default=10_000, ge=1, description="Default mailbox bound for 'realtime' subscriptions."
    )


class LoomConfig(_Section):
    """The whole of ``loom.toml``."""

    bus: BusConfig = BusConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    path: Path | None = Field(default=None, exclude=True)

    @property
    def project_dir(self) -> Path:
        """The folder holding ``loom.toml`` (the working directory when there is none)."""
        return self.path.parent if self.path else Path.cwd()


def find_config(start: Path | None = None) -> Path | None:
    """``$LOOM_CONFIG`` if set, else the nearest ``loom.toml`` from ``start`` upward."""
    env = os.environ.get("LOOM_CONFIG")
    if env:
        return Path(env)
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def load_config(path: str | os.PathLike[str] | None = None) -> LoomConfig:
    """Load ``loom.toml`` into a :class:`LoomConfig`.

    Args:
        path: the file; ``None`` looks for one (see :func:`find_config`).

    Raises:
        ConfigError: the file is missing (when named), not TOML, or has a bad key or value;
            the message names the file, the key and the fix.
    """
    file = Path(path) if path is not None else find_config()
    if file is None:
        return LoomConfig()
    if not file.is_file():
        raise ConfigError(
            "no such file: create it with `loom init` or pass the right path", path=str(file)
        )
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(file)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"not UTF-8 text ({exc.reason}): save it as UTF-8", path=str(file)
        ) from None
    return parse_config(raw, path=file)


def parse_config(raw: dict[str, Any], *, path: Path | None = None) -> LoomConfig:
    """Validate an already-parsed TOML document."""
    try:
        config = LoomConfig.model_validate(raw)
    except ValidationError as exc:
        raise _config_error(exc, path) from None
    return config.model_copy(update={"path": path.resolve() if path else None})


def _config_error(exc: ValidationError, path: Path | None) -> ConfigError:
    first = exc.errors()[0]
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc)
    if first["type"] == "extra_forbidden":
        model: type[BaseModel] = LoomConfig
        for part in loc[:-1]:
            field = model.model_fields.get(part)
            annotation = field.annotation if field else None
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                model = annotation
        valid = [name for name in model.model_fields if name != "path"]
        near = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"valid keys: {', '.join(valid)}"
        section = ".".join(loc[:-1])
        where = f"[{section}]" if section else "the top level"
        message = f"unknown key {loc[-1]!r} in {where}: {hint}"
        return ConfigError(message, path=str(path) if path else None)
    message = f"{key} = {first.get('input')!r}: {first['msg']}"
    return ConfigError(message, path=str(path) if path else None)
