"""How a NATS client reaches and proves itself to the servers (``[bus]``'s NATS settings)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NatsOptions"]


@dataclass(frozen=True)
class NatsOptions:
    """How to reach and prove oneself to NATS (``[bus]``'s NATS settings)."""

    servers: list[str] = field(default_factory=lambda: ["nats://127.0.0.1:4222"])
    credentials: Path | None = None  # a .creds file (JWT + NKEY seed)
    nkey: Path | None = None  # an NKEY seed file
    token: str | None = None
    user: str | None = None
    password: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def connect_options(self) -> dict[str, Any]:
        """nats-py's ``connect`` keywords for these settings."""
        options: dict[str, Any] = {"servers": list(self.servers)}
        if self.credentials is not None:
            options["user_credentials"] = str(self.credentials)
        if self.nkey is not None:
            options["nkeys_seed"] = str(self.nkey)
        if self.token:
            options["token"] = self.token
        if self.user:
            options["user"], options["password"] = self.user, self.password or ""
        if self.tls_ca or self.tls_cert:
            context = ssl.create_default_context(cafile=str(self.tls_ca) if self.tls_ca else None)
            if self.tls_cert:
                context.load_cert_chain(
                    str(self.tls_cert), str(self.tls_key) if self.tls_key else None
                )
            options["tls"] = context
        return options
