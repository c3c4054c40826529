"""CURVE on the bus: what ``[bus] security = "curve"`` puts on the broker's and the
clients' sockets.

The broker is the CURVE server (its key pair is ``broker``); every client proves one
identity's key pair (``[bus] identity``) and knows the broker's public key, so a client
talks to the right broker and nobody else reads the traffic. The broker admits the keys
``[bus] allow`` names (default: every public key in the keys folder); the gatekeeper
(:mod:`.zap`) refuses the rest. ``inproc://`` connections (this process's own) carry no
handshake: the process that hosts the broker is trusted with its secret key anyway.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from ..errors import ConfigError
from .keys import BROKER, KeyPair, key_names, load_keys, load_public_key
from .zap import Gatekeeper

__all__ = ["ClientCurve", "ServerCurve", "client_curve", "keys_folder", "server_curve"]


@dataclass(frozen=True)
class ServerCurve:
    """The broker's side: its key pair and the client keys it admits (Z85 → identity)."""

    keys: KeyPair
    admitted: dict[bytes, str] = field(default_factory=dict)

    def secure(self, sock: zmq.Socket, domain: str) -> None:
        """Make ``sock`` a CURVE server of ``domain`` (before it binds) and admit the keys."""
        if self.keys.secret is None:
            raise ConfigError("the broker's CURVE keys have no secret half")
        sock.curve_server = True
        sock.curve_secretkey = self.keys.secret
        sock.curve_publickey = self.keys.public
        sock.zap_domain = domain.encode()
        Gatekeeper.of(sock.context).admit(domain, self.admitted)

    def release(self, context: zmq.Context, domain: str) -> None:
        Gatekeeper.of(context).forget(domain)


@dataclass(frozen=True)
class ClientCurve:
    """A client's side: its key pair and the broker's public key."""

    keys: KeyPair
    server_key: bytes

    def secure(self, sock: zmq.Socket, endpoint: str) -> None:
        """Make ``sock`` a CURVE client (before it connects), except to ``inproc://``."""
        if endpoint.startswith("inproc://"):
            return
        if self.keys.secret is None:
            raise ConfigError(f"the keys of {self.keys.name!r} have no secret half")
        sock.curve_serverkey = self.server_key
        sock.curve_publickey = self.keys.public
        sock.curve_secretkey = self.keys.secret


def keys_folder(folder: str, project_dir: Path) -> Path:
    """``[bus] keys``, relative to the project's folder unless absolute."""
    path = Path(os.path.expanduser(folder))
    return path if path.is_absolute() else project_dir / path


def server_curve(security: str, folder: Path, allow: list[str] | None = None) -> ServerCurve | None:
    """The broker's CURVE settings (None when ``security`` is ``"none"``).

    Raises:
        ConfigError: the broker's keys, or a key ``allow`` names, are missing.
    """
    if security == "none":
        return None
    names = allow if allow is not None else [n for n in key_names(folder) if n != BROKER]
    admitted = {load_public_key(folder, name).public: name for name in names}
    if not admitted:
        raise ConfigError(
            f'[bus] security = "curve" but no client key is admitted: create one with '
            f"`loom keys generate NAME` (it goes to {folder}) or list some in [bus] allow"
        )
    return ServerCurve(load_keys(folder, BROKER), admitted)


def client_curve(security: str, folder: Path, identity: str) -> ClientCurve | None:
    """A client's CURVE settings (None when ``security`` is ``"none"``).

    Raises:
        ConfigError: this identity's keys or the broker's public key are missing.
    """
    if security == "none":
        return None
    return ClientCurve(load_keys(folder, identity), load_public_key(folder, BROKER).public)
