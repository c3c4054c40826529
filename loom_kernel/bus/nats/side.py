"""A blocking NATS publisher for another thread of the process (the loop watchdog's).

nats-py runs on the event loop, and the watchdog publishes precisely when that loop is
stuck; so it speaks NATS's text protocol itself, over a plain socket: ``CONNECT`` once,
then ``HPUB`` per message (the headers :mod:`.codec` writes). A server that needs an
NKEY signature or TLS is out of its reach: it is not made then (None).
"""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

from .codec import ENVELOPE_HEADER, MSG_ID_HEADER
from .options import NatsOptions

__all__ = ["SidePublisher", "side_publisher"]


class SidePublisher:
    """Publishes ``[topic, header, payload]`` frames, as a ZeroMQ side socket does; answers
    the server's PINGs as it goes, and connects again if the server dropped it."""

    def __init__(self, address: tuple[str, int], hello: dict[str, object]):
        self._address = address
        self._hello = hello
        self._sock: socket.socket | None = None
        self._connect()

    def _connect(self) -> None:
        sock = socket.create_connection(self._address, 2)
        sock.recv(65536)  # the server's INFO line
        sock.sendall(f"CONNECT {json.dumps(self._hello)}\r\n".encode())
        self._sock = sock

    def send_multipart(self, frames: list[bytes]) -> None:
        topic, header, payload = frames
        event_id = json.loads(header).get("id", "")
        lines = (
            f"NATS/1.0\r\n{ENVELOPE_HEADER}: {header.decode()}\r\n"
            f"{MSG_ID_HEADER}: {event_id}\r\n\r\n"
        ).encode()
        command = f"HPUB {topic.decode()} {len(lines)} {len(lines) + len(payload)}\r\n".encode()
        message = command + lines + payload + b"\r\n"
        try:
            self._answer_pings()
            assert self._sock is not None
            self._sock.sendall(message)
        except OSError:  # dropped (unanswered PINGs while the loop was fine): once more
            self.close()
            self._connect()
            assert self._sock is not None
            self._sock.sendall(message)

    def _answer_pings(self) -> None:
        assert self._sock is not None
        try:
            waiting = self._sock.recv(65536, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        if not waiting:
            raise ConnectionResetError("the server closed the connection")
        if b"PING" in waiting:
            self._sock.sendall(b"PONG\r\n")

    def close(self, linger: int = 0) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def side_publisher(server: str, options: NatsOptions, name: str) -> SidePublisher | None:
    """A publisher connected to ``server`` (a nats:// URL), or None when the server needs
    what it cannot do (NKEY signatures, TLS).

    Raises:
        OSError: the server does not answer.
    """
    if options.credentials or options.nkey or options.tls_ca or options.tls_cert:
        return None
    where = urlsplit(server)
    if where.scheme != "nats":
        return None
    hello: dict[str, object] = {
        "verbose": False, "pedantic": False, "headers": True, "name": f"{name}-watchdog",
    }  # fmt: skip
    user = where.username or options.user
    if user:
        hello["user"], hello["pass"] = user, where.password or options.password or ""
    if options.token:
        hello["auth_token"] = options.token
    return SidePublisher((where.hostname or "127.0.0.1", where.port or 4222), hello)
