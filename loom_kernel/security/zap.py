"""The ZAP handler: who may connect to a CURVE broker, and as whom.

ZeroMQ asks a ZAP handler (``inproc://zeromq.zap.01`` of the socket's context) about every
connection a CURVE server socket accepts. There can be one per context, and one process
may host several brokers (tests do), so one :class:`Gatekeeper` per context answers for
all of them: each broker's sockets carry a ZAP domain of their own, and the gatekeeper
holds, per domain, the public keys it admits and the identity each key stands for. That
identity becomes the connection's ZAP user id (``frame.get("User-Id")`` on what it sends).

A key no domain lists, an unknown domain, or a check that raises is refused; a check that
never answers leaves the handshake to time out (``zmq.HANDSHAKE_IVL``): closed by default.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

__all__ = ["Gatekeeper"]

log = logging.getLogger("loom.security")


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, asking the gatekeeper; the user id is the key's identity."""

    def __init__(self, context: zmq.Context, keeper: Gatekeeper):
        super().__init__(context, log=logging.getLogger("loom.security.zap"))
        self._keeper = keeper

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self._keeper.identity(client_public_key) or ""


class Gatekeeper:
    """The admitted keys of every CURVE broker of one ZeroMQ context."""

    _by_context: weakref.WeakKeyDictionary[zmq.Context, Gatekeeper] = weakref.WeakKeyDictionary()
    _lock = threading.Lock()

    def __init__(self, context: zmq.Context):
        self._domains: dict[str, dict[bytes, str]] = {}
        self._keys: dict[bytes, str] = {}
        self._authenticator = _Authenticator(context, self)
        self._authenticator.start()
        self.refused = 0  #: connections refused since the start

    @classmethod
    def of(cls, context: zmq.Context) -> Gatekeeper:
        """The gatekeeper of ``context``, started on first use (its ZAP thread lives as
        long as the context)."""
        with cls._lock:
            keeper = cls._by_context.get(context)
            if keeper is None:
                keeper = cls._by_context[context] = cls(context)
            return keeper

    def admit(self, domain: str, keys: Mapping[bytes, str]) -> None:
        """Let the Z85 public ``keys`` (each to its identity) connect to sockets of ``domain``."""
        with self._lock:
            self._domains[domain] = dict(keys)
            self._rebuild()
        # pyzmq asks the provider of the connection's domain (a forgotten one stays
        # registered: it then admits nobody)
        self._authenticator.configure_curve_callback(domain, self)

    def forget(self, domain: str) -> None:
        """A broker closed: its domain admits nobody any more."""
        with self._lock:
            self._domains.pop(domain, None)
            self._rebuild()

    def identity(self, public_key: bytes) -> str | None:
        """The identity a (binary or Z85) public key stands for, if any domain admits it."""
        if len(public_key) == 32:
            public_key = z85.encode(public_key)
        return self._keys.get(public_key)

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's credentials-provider hook: may ``key`` connect in ``domain``?"""
        try:
            admitted = key in self._domains.get(domain, {})
        except Exception:  # never let an error open the door
            log.exception("the ZAP check failed; refusing the connection")
            admitted = False
        if not admitted:
            self.refused += 1
            log.warning("refused a bus connection (domain %s, key %s)", domain, key[:8])
        return admitted

    def _rebuild(self) -> None:
        self._keys = {key: who for keys in self._domains.values() for key, who in keys.items()}
