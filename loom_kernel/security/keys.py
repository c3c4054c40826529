"""CURVE key pairs on disk: ``<keys folder>/<name>.key`` (public) and ``<name>.key_secret``.

The files are ZeroMQ's own certificate format (``zmq.auth``), so ``zmq.auth.load_certificate``
and other ZeroMQ tools read them. A secret file is written ``0600`` and its folder ``0700``;
one that any user can read is refused when loaded (fix it with ``chmod 600``). Group read
is allowed: a Kubernetes Secret volume gives the pod's group (``fsGroup``) read access.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import zmq.auth

from ..errors import ConfigError

__all__ = ["BROKER", "KeyPair", "generate_keys", "key_names", "load_keys", "load_public_key"]

BROKER = "broker"  #: the key pair of the broker (the CURVE server)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


@dataclass(frozen=True)
class KeyPair:
    """One identity's keys, Z85-encoded (40 characters each); ``secret`` is None when only
    the public half is known."""

    name: str
    public: bytes
    secret: bytes | None = None


def check_name(name: str) -> str:
    """A key name is a file name: letters, digits, ``_ . -`` (64 at most)."""
    if not _NAME.match(name):
        raise ConfigError(
            f"bad key name {name!r}: use letters, digits, '_', '.' or '-' (at most 64), "
            "starting with a letter or a digit"
        )
    return name


def generate_keys(folder: Path, name: str, *, overwrite: bool = False) -> KeyPair:
    """Write a new key pair ``name`` into ``folder`` (created ``0700``).

    Raises:
        ConfigError: the name is not a file name, or the pair exists and ``overwrite`` is
            off (a replaced key locks out every peer that trusted the old one).
    """
    check_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    public, secret = _paths(folder, name)
    if not overwrite and (public.exists() or secret.exists()):
        raise ConfigError(
            f"keys {name!r} exist already in {folder}; keep them, or pass --overwrite to "
            "replace them (peers that trusted the old public key are then refused)"
        )
    # zmq.auth writes both files; the secret one is made private before anything is in it
    old = os.umask(0o077)
    try:
        zmq.auth.create_certificates(folder, name)
    finally:
        os.umask(old)
    secret.chmod(0o600)
    public.chmod(0o644)
    return load_keys(folder, name)


def load_keys(folder: Path, name: str) -> KeyPair:
    """Both halves of ``name``'s keys.

    Raises:
        ConfigError: no such keys (the message says how to make them), or any user can
            read the secret file.
    """
    _, secret = _paths(folder, check_name(name))
    if not secret.exists():
        raise ConfigError(
            f"no secret key {name!r} in {folder}: create it with `loom keys generate {name}`"
        )
    mode = stat.S_IMODE(secret.stat().st_mode)
    if mode & 0o007:
        raise ConfigError(f"any user can read {secret} (mode {mode:o}): `chmod 600 {secret}`")
    public_key, secret_key = zmq.auth.load_certificate(secret)
    return KeyPair(name, public_key, secret_key)


def load_public_key(folder: Path, name: str) -> KeyPair:
    """The public half of ``name``'s keys (all a peer needs to trust it)."""
    public, _ = _paths(folder, check_name(name))
    if not public.exists():
        raise ConfigError(
            f"no public key {name!r} in {folder}: create it with `loom keys generate {name}`, "
            f"or copy its {name}.key file there"
        )
    public_key, _ = zmq.auth.load_certificate(public)
    return KeyPair(name, public_key)


def key_names(folder: Path) -> list[str]:
    """The names of every public key in ``folder``, sorted."""
    if not folder.is_dir():
        return []
    return sorted(path.stem for path in folder.glob("*.key") if _NAME.match(path.stem))


def _paths(folder: Path, name: str) -> tuple[Path, Path]:
    return folder / f"{name}.key", folder / f"{name}.key_secret"
