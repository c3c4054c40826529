"""``[bus]`` of ``loom.toml`` (``docs/configuration.md``) and the bus URL forms: kept beside
``config.py``, which re-exports them, so that each module stays small."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from ._config_section import Section

__all__ = [
    "BUS_URL_FORMS",
    "NATS_SCHEMES",
    "AclConfig",
    "BusConfig",
    "TenantConfig",
    "bus_endpoints",
]


_HOST = re.compile(r"(\*|\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9\-.]*[A-Za-z0-9])?)\Z")
#: URL schemes of a NATS server: ``[bus] url`` with one of them means ``backend = "nats"``.
NATS_SCHEMES = ("nats", "tls")
BUS_URL_FORMS = "tcp://host:port (e.g. tcp://127.0.0.1:7355), ipc:///path or inproc://name"


def bus_endpoints(url: str) -> tuple[str, str]:
    """The publish and subscribe endpoints one bus URL names.

    ``tcp://h:P`` → P and P+1 (``tcp://h:0``: free ports picked at bind);
    ``ipc://x`` / ``inproc://x`` → ``x.in`` and ``x.out``.

    Raises:
        ValueError: not one of the accepted forms; the message says which are.
    """
    if not isinstance(url, str):
        raise ValueError(f"a bus url is a string such as {BUS_URL_FORMS}")
    scheme, sep, rest = url.partition("://")
    if not sep or not rest:
        raise ValueError(f"bad bus url {url!r}: expected {BUS_URL_FORMS}")
    if scheme == "tcp":
        host, colon, port = rest.rpartition(":")
        if not colon or not port.isdigit() or not host:
            raise ValueError(
                f"bad bus url {url!r}: a tcp url needs host and port, e.g. tcp://127.0.0.1:7355"
            )
        if not _HOST.match(host):
            raise ValueError(
                f"bad bus url {url!r}: {host!r} is not a host name or address "
                "(e.g. 127.0.0.1, localhost, bus.internal or [::1])"
            )
        number = int(port)
        if number == 0:
            return f"tcp://{host}:0", f"tcp://{host}:0"
        if not 0 < number < 65535:
            raise ValueError(f"bad bus url {url!r}: port must be in 1..65534 (P and P+1 are used)")
        return f"tcp://{host}:{number}", f"tcp://{host}:{number + 1}"
    if scheme in ("ipc", "inproc"):
        return f"{url}.in", f"{url}.out"
    raise ValueError(f"bad bus url {url!r}: unknown transport {scheme!r} (use {BUS_URL_FORMS})")


class BusConfig(Section):
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
    max_message_size: int = Field(
        default=16 * 1024 * 1024,
        ge=1024,
        description="Largest frame (bytes) a bus socket accepts; a publisher refuses bigger "
        "events with a clear error, and a peer that sends one is disconnected.",
    )
    beat_interval: float = Field(
        default=0.25, gt=0, description="Seconds between two beats of a broker Loom starts."
    )
    lost_after: float = Field(
        default=1.0, gt=0, description="Seconds without a beat (at least 3 beats) before "
        "clients count the bus as lost: waiting requests fail, failover starts.",
    )  # fmt: skip
    batching: bool = Field(
        default=True, description="Events published in one turn of the event loop leave as "
        "batches (one ZeroMQ message per run of one topic); the first one leaves at once.",
    )  # fmt: skip
    local_delivery: bool = Field(
        default=True, description="A process's own subscriptions get its events at once, in "
        "process; they go to the bus once for the others.",
    )  # fmt: skip
    filter_at_source: bool = Field(
        default=True, description="The process hosting the bus (with local_delivery) sends "
        "it nothing that no other client subscribes to: its broker counts subscriptions, "
        "forwarding in Python. false: it sends everything; the broker is ZeroMQ's C proxy.",
    )  # fmt: skip
    takeover: bool = Field(
        default=True, description="When the bus's host process dies, a process of the project "
        'in mode "auto" takes the bus over at the same address.',
    )  # fmt: skip

    security: Literal["none", "curve"] = Field(
        default="none", description='"curve": the broker admits only clients holding a key '
        "it trusts, and traffic over tcp/ipc is encrypted (docs/security.md); keys come from "
        "`loom keys generate`.",
    )  # fmt: skip
    keys: str = Field(
        default=".loom/keys", description="Folder of the CURVE key pairs (relative to the "
        "project's folder): broker.key, <identity>.key and their .key_secret files.",
    )  # fmt: skip
    identity: str = Field(
        default="loom", description="The key pair this process proves on a CURVE bus.",
    )  # fmt: skip
    allow: list[str] | None = Field(
        default=None, description="The identities (key names) the broker admits on a CURVE "
        "bus. Unset: every public key in the keys folder.",
    )  # fmt: skip
    operators: list[str] | None = Field(
        default=None, description="The identities that may publish Loom's control requests "
        "(loom.supervisor.control and .logs: stop, start, restart agents, read their logs; "
        "loom.code.reload) on a CURVE bus. Unset: the identity of the process that hosts the "
        "broker.",
    )  # fmt: skip

    backend: Literal["zeromq", "nats"] = Field(
        default="zeromq", description='zeromq: Loom\'s own broker (one machine, or one host '
        'process others join); nats: an existing NATS server or cluster ([bus] servers), with '
        "JetStream for reliable delivery and replay (docs/scaling.md).",
    )  # fmt: skip
    servers: list[str] = Field(
        default_factory=lambda: ["nats://127.0.0.1:4222"], description="NATS only: the "
        "servers to connect to (nats://host:port, tls://host:port); any one is enough, the "
        "client learns the rest of the cluster.",
    )  # fmt: skip
    credentials: str | None = Field(
        default=None, description="NATS only: a .creds file (JWT and NKEY seed), relative to "
        "the project's folder.",
    )  # fmt: skip
    nkey: str | None = Field(
        default=None, description="NATS only: an NKEY seed file, relative to the project's folder.",
    )  # fmt: skip
    user: str | None = Field(
        default=None, description="NATS only: a user name; its password comes from "
        "$LOOM_NATS_PASSWORD (a token from $LOOM_NATS_TOKEN), never from loom.toml.",
    )  # fmt: skip
    tls_ca: str | None = Field(
        default=None, description="NATS only: the CA file that signed the servers' certificates."
    )
    tls_cert: str | None = Field(
        default=None, description="NATS only: this client's certificate (mutual TLS)."
    )
    tls_key: str | None = Field(default=None, description="NATS only: that certificate's key.")
    stream: str = Field(
        default="LOOM", description="NATS only: the JetStream stream holding the event log "
        "([eventlog] topics): reliable delivery and replay read it.",
    )  # fmt: skip
    stream_replicas: int = Field(
        default=1, ge=1, le=5, description="NATS only: copies of the stream in the cluster "
        "(3 survives the loss of a node).",
    )  # fmt: skip

    @field_validator("servers")
    @classmethod
    def _nats_urls(cls, servers: list[str]) -> list[str]:
        if not servers:
            raise ValueError("name at least one NATS server, e.g. ['nats://127.0.0.1:4222']")
        for url in servers:
            scheme, sep, rest = url.partition("://")
            if not sep or scheme not in NATS_SCHEMES or not rest:
                raise ValueError(
                    f"bad NATS server {url!r}: expected nats://host:port or tls://host:port"
                )
        return servers

    @field_validator("stream")
    @classmethod
    def _stream_name(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", name):
            raise ValueError(
                f"bad stream name {name!r}: letters, digits, _ and - only (JetStream's rule)"
            )
        return name

    @field_validator("url")
    @classmethod
    def _valid_url(cls, url: str | None) -> str | None:
        if url is not None and url.partition("://")[0] not in NATS_SCHEMES:
            bus_endpoints(url)
        return url

    @model_validator(mode="after")
    def _nats_has_its_own_security(self) -> BusConfig:
        if self.backend == "nats" and self.security == "curve":
            raise ValueError(
                'security = "curve" secures Loom\'s ZeroMQ broker; on NATS use its own '
                "security: [bus] credentials, nkey or user, and tls_* (docs/scaling.md)"
            )
        return self


class AclConfig(Section):
    """``[acl.<identity>]``: what one identity may do on a CURVE bus (``docs/security.md``).

    A list left unset allows everything of its kind; ``[]`` allows nothing. Patterns follow
    the kernel's rules (``*`` is one segment, a trailing ``*`` the rest).
    """

    publish: list[str] | None = Field(
        default=None, description="Topic patterns it may publish on (its own topics; Loom's "
        "loom.* plumbing follows fixed rules, see docs/security.md).",
    )  # fmt: skip
    subscribe: list[str] | None = Field(
        default=None, description="Topic patterns it may subscribe to. Enforced on ZeroMQ's "
        "byte prefixes, so a wildcard may only end a pattern: 'market.price.*', not "
        "'market.*.AAPL'.",
    )  # fmt: skip
    tools: list[str] | None = Field(
        default=None, description="Names (or patterns) of the tools it may call.",
    )  # fmt: skip
    agents: list[str] = Field(
        default_factory=list, description="Agent and process ids only this identity may "
        "publish as (globs: 'trade*'); any other identity using one is refused.",
    )  # fmt: skip

    # the patterns themselves are checked by the broker's guard (security/guard.py)
    @field_validator("subscribe")
    @classmethod
    def _prefix_patterns(cls, patterns: list[str] | None) -> list[str] | None:
        for pattern in patterns or []:
            if "*" in pattern.rstrip("*") or (
                pattern.endswith("*") and pattern != "*" and not pattern.endswith(".*")
            ):
                raise ValueError(
                    f"{pattern!r}: the broker enforces subscriptions by their byte prefix, so a "
                    "wildcard may only end a pattern (e.g. 'market.price.*'); list the topics "
                    "instead, or end the pattern at the wildcard"
                )
        return patterns


_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\Z")


class TenantConfig(Section):
    """``[tenants.<name>]``: a namespace and the identities that live in it, on a CURVE bus
    (``docs/security.md``)."""

    prefix: str | None = Field(
        default=None, description="The tenant's topic namespace: its identities publish, "
        "subscribe and name their tools under '<prefix>.'. Unset: the tenant's name.",
    )  # fmt: skip
    identities: list[str] = Field(
        default_factory=list, description="The identities (key names) of the tenant.",
    )  # fmt: skip

    @field_validator("prefix")
    @classmethod
    def _valid_prefix(cls, prefix: str | None) -> str | None:
        if prefix is not None and (not _PREFIX.match(prefix) or prefix.split(".")[0] == "loom"):
            raise ValueError(
                f"bad prefix {prefix!r}: one or more dot-separated segments of letters, digits, "
                "'_' or '-', not starting with 'loom' (e.g. 'acme' or 'org.acme')"
            )
        return prefix
