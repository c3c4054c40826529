"""``loom.toml``: the one loader, mapping the file onto typed settings.

Every section is a pydantic model that forbids unknown keys, so a typo fails
loudly with the nearest valid key. :func:`load_config` finds the file (an explicit
path, ``$LOOM_CONFIG``, or the nearest ``loom.toml`` upward from the working
directory) and returns a :class:`LoomConfig`; no file at all means defaults.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from ._bus_config import BUS_URL_FORMS, AclConfig, BusConfig, TenantConfig, bus_endpoints
from ._config_section import Section
from ._eventlog_config import EventLogConfig
from ._tools_config import SandboxedToolConfig
from .errors import ConfigError

__all__ = [
    "BUS_URL_FORMS",
    "ENV_REFERENCE",
    "AclConfig",
    "AgentConfig",
    "BusConfig",
    "EventLogConfig",
    "LLMConfig",
    "LoomConfig",
    "MCPServerConfig",
    "MemoryConfig",
    "RouterConfig",
    "RuntimeConfig",
    "SandboxedToolConfig",
    "TenantConfig",
    "TracingConfig",
    "bus_endpoints",
    "find_config",
    "load_config",
    "parse_config",
]

CONFIG_NAME = "loom.toml"
#: ``${NAME}`` in an MCP server's ``env`` or ``headers``: the environment variable's value.
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class RuntimeConfig(Section):
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
    handler_timeout: float | None = Field(
        default=None, gt=0, description="Seconds a handler call may run before it is cancelled "
        "(unset: no limit); @on_event(timeout=...) overrides it.",
    )  # fmt: skip
    namespace: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]*$", description="Run in a replay "
        "namespace: every topic under 'replay.<namespace>.' (`loom replay --into`).",
    )  # fmt: skip


_NAME = r"^[A-Za-z0-9][A-Za-z0-9_\-]*$"


class LLMConfig(BaseModel):
    """``[llm.<name>]``: one model behind litellm.

    Keys other than the ones below are passed to ``litellm.acompletion`` as they are
    (``top_p``, ``seed``, ``stop``, ``extra_headers``...), except near-misses of a known
    key, which are reported as typos.
    """

    model_config = ConfigDict(extra="allow", frozen=True, strict=True)

    model: str = Field(
        description="litellm model name with its provider prefix, e.g. 'deepseek/deepseek-chat' "
        "or 'openai/gpt-4o-mini' (an OpenAI-compatible server: 'openai/<model>' + api_base)."
    )
    api_base: str | None = Field(default=None, description="Base URL of the API server.")
    api_key: str | None = Field(
        default=None, description="The key itself (prefer api_key_env: keep secrets out of files)."
    )
    api_key_env: str | None = Field(
        default=None, description="Name of the environment variable holding the key."
    )
    temperature: float | None = Field(default=None, ge=0, le=2, description="Sampling temperature.")
    max_tokens: int | None = Field(default=None, ge=1, description="Most tokens per completion.")
    timeout_sec: float = Field(default=60.0, gt=0, description="Seconds before a call fails.")
    num_retries: int = Field(
        default=0, ge=0, description="Retries of a failed call (0: failures surface at once)."
    )
    json_mode: bool = Field(
        default=True,
        description="Ask for response_format json_object on structured calls (turn off for "
        "servers that reject it).",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_typos(cls, raw: Any) -> Any:
        # Before the fields: `modell = ...` must read as a typo, not as a missing model.
        if not isinstance(raw, dict):
            return raw
        known = list(cls.model_fields)
        for key in raw:
            if key in known:
                continue
            near = difflib.get_close_matches(key, known, n=1, cutoff=0.8)
            if near:
                raise ValueError(
                    f"unknown key {key!r} (did you mean {near[0]!r}?); keys that are not "
                    "Loom's are passed to litellm as they are"
                )
        return raw

    @property
    def extra_params(self) -> dict[str, Any]:
        """The pass-through keys, for litellm."""
        return dict(self.model_extra or {})


class RouterConfig(Section):
    """``[router]``: a litellm Router over several ``[llm.*]`` entries, as ``ctx.llm("router")``."""

    models: list[str] = Field(
        default_factory=list,
        description="Names of [llm.*] entries that share the load (the routing pool).",
    )
    strategy: Literal[
        "simple",
        "latency",
        "cost",
        "usage",
        "least-busy",
        # litellm's own names, as earlier releases took them
        "simple-shuffle",
        "usage-based-routing",
        "usage-based-routing-v2",
        "latency-based-routing",
        "cost-based-routing",
    ] = Field(
        default="simple",
        description="How the model of the pool is picked per call: simple (random, weighted "
        "by rpm/tpm), latency (fastest lately), cost (cheapest: litellm's prices or the "
        "entries' input_cost_per_token/output_cost_per_token), usage (most headroom under "
        "tpm/rpm), least-busy (fewest calls in flight).",
    )
    fallbacks: list[str] = Field(
        default_factory=list,
        description="[llm.*] entries tried in order when every model of the pool failed.",
    )
    num_retries: int = Field(default=1, ge=0, description="Retries inside the pool.")
    timeout_sec: float = Field(
        default=60.0, gt=0, description="Seconds per call, retries included."
    )


class MCPServerConfig(Section):
    """``[mcp.<name>]``: an MCP server, over stdio (``command``) or streamable HTTP (``url``)."""

    command: str | None = Field(
        default=None,
        description="Program to start (stdio). 'python' means the Python running Loom.",
    )
    args: list[str] = Field(default_factory=list, description="Its arguments.")
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment variables for the server process."
    )
    cwd: str | None = Field(
        default=None, description="Working directory of the server (relative: to the project)."
    )
    url: str | None = Field(
        default=None, description="Streamable-HTTP endpoint, e.g. 'http://127.0.0.1:8000/mcp'."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="HTTP headers for url servers (e.g. Authorization)."
    )
    timeout_sec: float = Field(default=30.0, gt=0, description="Seconds per tool call.")
    startup_timeout_sec: float = Field(
        default=20.0, gt=0, description="Seconds to start the server and list its tools."
    )
    max_restarts: int = Field(
        default=5, ge=0, description="Restarts after crashes before the server is given up."
    )
    enabled: bool = Field(default=True, description="false: declared but not started.")

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError(
                'set exactly one of command (a stdio server, e.g. command = "python", '
                'args = ["-m", "mcp_server_time"]) or url (streamable HTTP, e.g. '
                'url = "http://127.0.0.1:8000/mcp")'
            )
        return self

    @property
    def transport(self) -> str:
        return "stdio" if self.command is not None else "streamable-http"


class AgentConfig(Section):
    """``[agents.<id>]``: how the project runs one agent, and its own settings."""

    module: str | None = Field(
        default=None,
        description="Where the agent class is: 'agents.trend:TrendAgent' (module:Class).",
    )
    enabled: bool = Field(default=True, description="false: `loom run` skips it.")
    group: str | None = Field(
        default=None, description="Agents with the same group share one process under `loom run`."
    )
    restart: Literal["on-failure", "always", "never"] = Field(
        default="on-failure", description="What `loom run` does when its process exits."
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Free-form settings the agent reads as ctx.settings."
    )


class MemoryConfig(Section):
    """``[memory]``: agents' short-term and long-term memory."""

    path: str = Field(
        default=".loom/memory.db",
        description="SQLite file of long-term memory (relative: to the project folder).",
    )
    short_term_size: int = Field(
        default=200, ge=1, description="Items kept in each agent's short-term memory."
    )
    default_ttl_sec: float | None = Field(
        default=None, gt=0, description="Lifetime of items added without ttl (unset: forever)."
    )
    max_items: int = Field(
        default=100_000,
        ge=1,
        description="Long-term items kept per agent, at most about (its oldest go first).",
    )
    max_mb: float = Field(
        default=1024.0,
        gt=0,
        description="MiB of the long-term file in use, at most about (the oldest items of "
        "every agent go first).",
    )


class TracingConfig(Section):
    """``[tracing]``: OpenTelemetry spans for the workflows on the bus."""

    enabled: bool = Field(default=True, description="false: no spans at all.")
    sample_ratio: float = Field(
        default=1.0, ge=0, le=1, description="Share of new traces kept (errors always are)."
    )
    capture_content: bool = Field(
        default=False, description="Record LLM prompts and completions in spans."
    )
    otlp_endpoint: str | None = Field(
        default=None,
        description="Also export over OTLP/HTTP, e.g. 'http://localhost:4318' (Jaeger, a "
        "collector) or 'http://localhost:6006' (Arize Phoenix).",
    )
    otlp_headers: dict[str, str] = Field(
        default_factory=dict,
        description="HTTP headers of every OTLP request (e.g. Authorization); ${VAR} is the "
        "environment variable's value.",
    )
    otlp_queue_size: int = Field(
        default=20_000,
        ge=100,
        description="Spans waiting for the OTLP backend at most; past it they are dropped and "
        "counted (lower sample_ratio for a slow backend).",
    )
    otlp_timeout_sec: float = Field(default=10.0, gt=0, description="Seconds per OTLP request.")
    service_name: str | None = Field(
        default=None,
        description="The service name backends show (default 'loom:<script>', e.g. "
        "'loom:ipykernel_launcher' in a notebook).",
    )
    project: str | None = Field(
        default=None,
        description="The project backends file the traces under (Phoenix's project: the "
        "resource attribute openinference.project.name).",
    )
    resource_attributes: dict[str, str] = Field(
        default_factory=dict,
        description="More OpenTelemetry resource attributes (deployment.environment, "
        "service.version...).",
    )
    store_path: str = Field(
        default=".loom/traces.db", description="SQLite span store (relative: to the project)."
    )
    retention_hours: float = Field(
        default=24.0, gt=0, description="Spans older than this leave the store."
    )
    store_max_spans: int = Field(
        default=1_000_000, ge=1000, description="The store keeps at most this many spans."
    )
    store_max_mb: float = Field(
        default=512.0, ge=1, description="The store's file stays within this many MiB "
        "(oldest spans go first); its WAL adds a few tens of MiB at most.",
    )  # fmt: skip
    collect: bool = Field(
        default=True,
        description="The process running the bus (embedded or `loom bus`) stores the spans "
        "published on it in store_path.",
    )


class LoomConfig(Section):
    """The whole of ``loom.toml``."""

    bus: BusConfig = BusConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    llm: dict[str, LLMConfig] = Field(default_factory=dict)
    router: RouterConfig = RouterConfig()
    mcp: dict[str, MCPServerConfig] = Field(default_factory=dict)
    tools: dict[str, SandboxedToolConfig] = Field(default_factory=dict)
    agents: dict[str, AgentConfig] = Field(default_factory=dict)
    memory: MemoryConfig = MemoryConfig()
    tracing: TracingConfig = TracingConfig()
    eventlog: EventLogConfig = EventLogConfig()
    acl: dict[str, AclConfig] = Field(
        default_factory=dict,
        description="[acl.<identity>]: what each identity may publish, subscribe to and call "
        'on a CURVE bus (docs/security.md); needs [bus] security = "curve".',
    )
    tenants: dict[str, TenantConfig] = Field(
        default_factory=dict,
        description="[tenants.<name>]: namespaces whose identities' events never cross into "
        "another tenant's unless an [acl.*] says so (docs/security.md); needs [bus] "
        'security = "curve".',
    )
    demo: dict[str, Any] = Field(
        default_factory=dict,
        description="The Market Analyst demo's own settings, checked by the demo "
        "(demo/market_analyst/settings.py).",
    )
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _names_and_references(self) -> LoomConfig:
        for section in ("llm", "mcp", "agents"):
            for name in getattr(self, section):
                if not re.match(_NAME, name):
                    raise ValueError(
                        f"[{section}.{name}]: bad name {name!r}: use letters, digits, '_' and '-'"
                    )
        self._check_tenants()
        if self.acl and self.bus.security != "curve":
            names = ", ".join(f"[acl.{name}]" for name in self.acl)
            raise ValueError(
                f'{names} needs [bus] security = "curve": without it the broker cannot tell '
                "who sent what (docs/security.md)"
            )
        if "router" in self.llm:
            raise ValueError(
                "[llm.router]: 'router' is the name of the [router] section's models; "
                "rename this entry"
            )
        for key in ("models", "fallbacks"):
            for name in getattr(self.router, key):
                if name not in self.llm:
                    known = ", ".join(self.llm) or "none yet"
                    raise ValueError(
                        f"[router] {key} names {name!r}, which is not an [llm.*] entry "
                        f"(declared: {known}): add [llm.{name}] or fix the name"
                    )
        return self

    def _check_tenants(self) -> None:
        if self.tenants and self.bus.security != "curve":
            names = ", ".join(f"[tenants.{name}]" for name in self.tenants)
            raise ValueError(f'{names} needs [bus] security = "curve" (docs/security.md)')
        homes: dict[str, str] = {}
        prefixes: dict[str, str] = {}
        for name, tenant in self.tenants.items():
            prefix = tenant.prefix or name
            for other, theirs in prefixes.items():
                if (
                    prefix == theirs
                    or prefix.startswith(theirs + ".")
                    or theirs.startswith(prefix + ".")
                ):
                    raise ValueError(
                        f"[tenants.{name}] prefix {prefix!r} overlaps [tenants.{other}]'s "
                        f"{theirs!r}: give each tenant a namespace of its own"
                    )
            prefixes[name] = prefix
            for identity in tenant.identities:
                if identity in homes:
                    raise ValueError(
                        f"identity {identity!r} is in [tenants.{homes[identity]}] and "
                        f"[tenants.{name}]: an identity lives in one tenant"
                    )
                homes[identity] = name

    @property
    def project_dir(self) -> Path:
        """The folder holding ``loom.toml`` (the working directory when there is none)."""
        return self.path.parent if self.path else Path.cwd()

    def project_path(self, relative: str | os.PathLike[str]) -> Path:
        """A path of the project: relative paths are taken from the project folder."""
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.project_dir / path


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
    file = str(path) if path else None
    kind = first["type"]
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        valid = [name for name in model.model_fields if model is not LoomConfig or name != "path"]
        near = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"valid keys: {', '.join(valid)}"
        return ConfigError(f"unknown key {loc[-1]!r} in {_where(loc[:-1])}: {hint}", path=file)
    if kind == "value_error":
        message = str(first["msg"]).removeprefix("Value error, ")
        if loc and loc[-1] in _model_at(loc[:-1]).model_fields:  # a key's own check
            return ConfigError(f"{_where(loc[:-1])} {loc[-1]}: {message}", path=file)
        return ConfigError(f"[{'.'.join(loc)}] {message}" if loc else message, path=file)
    if kind == "missing":
        example = _EXAMPLES.get(loc[-1], "...")
        return ConfigError(
            f"{_where(loc[:-1])} has no {loc[-1]!r}: add `{loc[-1]} = {example}`", path=file
        )
    setting = f"{_key(loc)} = {_toml(first.get('input'))}"
    if kind in _TYPE_NAMES:
        expected = _TYPE_NAMES[kind]
        return ConfigError(
            f"{setting}: {expected} is expected here, not {_toml_type(first.get('input'))}",
            path=file,
        )
    return ConfigError(f"{setting}: {first['msg']}", path=file)


_TYPE_NAMES = {
    "float_type": "a number",
    "int_type": "a whole number",
    "bool_type": "true or false",
    "string_type": "a quoted string",
    "list_type": "a list [...]",
    "dict_type": "a table",
}


def _key(loc: list[str]) -> str:
    """``[runtime] stall_after`` for a key of a section, ``bus`` for a top-level one."""
    return f"[{'.'.join(loc[:-1])}] {loc[-1]}" if len(loc) > 1 else ".".join(loc)


def _where(section: list[str]) -> str:
    return f"[{'.'.join(section)}]" if section else "the top level"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


_EXAMPLES = {"model": '"deepseek/deepseek-chat"'}


def _model_at(loc: list[str]) -> type[BaseModel]:
    """The settings class a location points into (skipping the names of dict sections)."""
    model: type[BaseModel] = LoomConfig
    parts = iter(loc)
    for part in parts:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
            next(parts, None)  # the entry's name: [llm.<name>]
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
    return model
