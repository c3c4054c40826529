"""The broker: an XSUB/XPUB proxy that every client publishes into and subscribes from.

A bus has two endpoints: publishers connect to the broker's XSUB socket
(``BusAddress.publish``), subscribers to its XPUB socket (``BusAddress.subscribe``).
A single URL names both: ``tcp://host:P`` means P for publishers and P+1 for
subscribers; ``ipc:///path`` and ``inproc://name`` get ``.in`` / ``.out`` suffixes.

The broker subscribes upstream to everything, so a subscription is live for every
publisher as soon as the broker's XPUB socket has processed it (see ``client.py``
for how a subscriber waits for that). It forwards frames without parsing them:
malformed frames cannot crash it.

A broker given CURVE settings (``[bus] security = "curve"``, :mod:`loom_kernel.security`)
is a CURVE server on both sockets: a client without an admitted key pair cannot connect,
so it can neither publish nor receive; ``ipc://`` socket files are made ``0600``.

A CURVE broker also knows who sent each message (the identity of the key pair): it forwards
through the Python loop of :mod:`.proxy` with a :class:`~.guarded.GuardGate`, where a
:class:`~loom_kernel.security.guard.Guard` refuses what an identity may not say (another's
name, a reply to a request it was not sent, what its ``[acl.<identity>]`` forbids).

A broker given :class:`~.listeners.Listeners` (the one a process embeds, with ``[bus]
filter_at_source``) forwards through that Python loop too, and counts every subscription
there before applying it: its host's clients then send nothing that no other client
subscribes to.

A broker started with a ``beat_interval`` publishes ``loom.bus.beat`` from a thread of its
own (neither its host's event loop nor the GIL-free proxy thread): clients that stop
hearing it know the bus is gone (see ``connection.py``). A broker that replaces a dead one
at the same address is started with a ``settle`` time: the proxy starts only once the
subscribers had time to reconnect and resubscribe, so what publishers buffered while
there was no bus is not thrown away at a broker with no subscription yet.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from ...config import BusConfig
from ...errors import BusError
from ...protocol import reserved
from ...protocol.envelope import Envelope, encode_data, encode_frames, new_id
from ...security import ServerCurve, keys_folder, server_curve
from ...security.guard import Access, Guard
from .address import BusAddress
from .guarded import GuardGate
from .listeners import Listeners
from .proxy import Gate, python_proxy

__all__ = ["Broker", "BrokerStatistics", "broker_for"]

_runs = itertools.count()


@dataclass(frozen=True)
class BrokerStatistics:
    """Counters read from the running proxy: ZeroMQ counts frames (a Loom event is 3)."""

    frames_in: int
    bytes_in: int
    frames_out: int
    bytes_out: int
    denied: int = 0  # messages a guarded (CURVE) broker refused

    def to_dict(self) -> dict[str, int]:
        return {
            "frames_in": self.frames_in,
            "bytes_in": self.bytes_in,
            "frames_out": self.frames_out,
            "bytes_out": self.bytes_out,
            "denied": self.denied,
        }


class Broker:
    """An XSUB/XPUB proxy running on its own thread (ZeroMQ's C proxy: no GIL held).

    Args:
        addresses: where to bind; several are allowed (e.g. inproc for this process
            and tcp for the others).
        context: the ZeroMQ context (inproc endpoints need the clients' context).
        hwm: high-water mark of both sockets, in messages.
        max_message_size: the largest frame a publisher may send; one that sends a bigger
            frame is disconnected by ZeroMQ (its events are lost, seen as sequence gaps).
        beat_interval: seconds between two ``loom.bus.beat`` (None: no beat).
        curve: CURVE settings (None: no authentication, no encryption).
        guard: what each identity may say (a CURVE broker gets one that only checks
            names and replies when None is given).
        listeners: where to count subscriptions, for the clients of this process (None:
            not counted; a plain broker then forwards with ZeroMQ's C proxy).

    ``start()`` binds in the calling thread, so a port in use fails there, clearly.
    ``epoch`` names this broker's run: a client that hears a new one knows the bus it
    is on was replaced.
    """

    def __init__(
        self,
        addresses: list[BusAddress],
        *,
        context: zmq.Context | None = None,
        hwm: int = 100_000,
        max_message_size: int = -1,
        beat_interval: float | None = None,
        curve: ServerCurve | None = None,
        guard: Guard | None = None,
        listeners: Listeners | None = None,
    ):
        if not addresses:
            raise BusError("a broker needs at least one address to bind")
        self._requested = list(addresses)
        self._context = context or zmq.Context.instance()
        self._hwm = hwm
        self._max_message_size = max_message_size
        self._thread: threading.Thread | None = None
        self.epoch = os.urandom(4).hex()
        self.curve = curve
        if guard is None and curve is not None:
            guard = Guard(host="loom")
        self.guard = guard
        self.listeners = listeners
        self._domain = f"loom-bus-{self.epoch}"  # its sockets' ZAP domain
        # unique names: id(self) is reused once an object is freed, maybe before the proxy
        # thread of a broker that was never closed has let go of its sockets
        self._control_url = f"inproc://loom-broker-control-{self.epoch}-{next(_runs)}"
        self._control: zmq.Socket | None = None
        self._lock = threading.Lock()
        self.beat_interval = beat_interval
        self._beat_url = f"inproc://loom-broker-beat-{self.epoch}-{next(_runs)}"
        self._stopping = threading.Event()
        self._proxying = threading.Event()
        self._beat_thread: threading.Thread | None = None
        self.addresses: list[BusAddress] = []

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, settle: float = 0.0) -> list[BusAddress]:
        """Bind every address and start proxying; returns the bound addresses.

        Args:
            settle: seconds to let subscribers (re)connect before forwarding anything
                (a broker taking over a dead one's address); publishers' events wait
                in ZeroMQ's queues meanwhile.
        """
        if self._thread is not None:
            raise BusError("broker already started")
        ctx = self._context
        xsub = ctx.socket(zmq.XSUB)
        xpub = ctx.socket(zmq.XPUB)
        control_server = ctx.socket(zmq.PAIR)
        for sock in (xsub, xpub):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, self._hwm)
            sock.setsockopt(zmq.RCVHWM, self._hwm)
        xsub.setsockopt(zmq.MAXMSGSIZE, self._max_message_size)
        if self._in_python:
            xpub.setsockopt(zmq.XPUB_MANUAL, 1)  # a subscription waits for the proxy loop
        if self.curve is not None:
            for sock in (xsub, xpub):
                self.curve.secure(sock, self._domain)
        try:
            for address in self._requested:
                self.addresses.append(_private(_bind_pair(xsub, xpub, address)))
            if self.beat_interval is not None:
                xsub.bind(self._beat_url)
        except BusError:
            self.addresses = []
            for sock in (xsub, xpub, control_server):
                sock.close(0)
            raise
        # Ask every publisher for everything: filtering happens at the XPUB side, so a
        # subscription is live for all publishers once XPUB has processed it.
        xsub.send(b"\x01")
        control_server.bind(self._control_url)
        self._control = ctx.socket(zmq.PAIR)
        self._control.connect(self._control_url)
        self._thread = threading.Thread(
            target=self._run,
            args=(xsub, xpub, control_server, settle),
            name="loom-broker",
            daemon=True,
        )
        self._thread.start()
        if self.beat_interval is not None:
            self._beat_thread = threading.Thread(
                target=self._beat, args=(self.beat_interval,), name="loom-bus-beat", daemon=True
            )
            self._beat_thread.start()
        return list(self.addresses)

    def _run(self, xsub: zmq.Socket, xpub: zmq.Socket, control: zmq.Socket, settle: float) -> None:
        try:
            if self._in_python:
                gate = Gate() if self.guard is None else GuardGate(self.guard, xpub, self._source)
                python_proxy(
                    xsub, xpub, control, gate, listeners=self.listeners,
                    settle=settle, started=self._proxying.set,
                )  # fmt: skip
            else:
                _settle(xpub, settle)
                self._proxying.set()
                zmq.proxy_steerable(xsub, xpub, None, control)
        except zmq.ContextTerminated:
            pass
        finally:
            for sock in (xsub, xpub, control):
                sock.close(0)

    @property
    def _in_python(self) -> bool:
        """Forwarding through :mod:`.proxy` (to judge, or to count subscriptions)."""
        return self.guard is not None or self.listeners is not None

    @property
    def _source(self) -> str:
        return f"bus-{self.epoch}"

    def _beat(self, interval: float) -> None:
        """Publish ``loom.bus.beat`` every ``interval`` until :meth:`close` (own socket)."""
        pub = self._context.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        pub.connect(self._beat_url)
        payload, content_type = encode_data(
            {"epoch": self.epoch, "pid": os.getpid(), "interval": interval}
        )
        source = self._source
        try:
            while not self._stopping.wait(interval):
                env = Envelope(
                    topic=reserved.BUS_BEAT, type="beat", source=source, payload=payload,
                    content_type=content_type, id=new_id(), ts=time.time_ns(),
                )  # fmt: skip
                pub.send_multipart(encode_frames(env))
        except zmq.ContextTerminated:
            pass
        finally:
            pub.close(0)

    def statistics(self) -> BrokerStatistics:
        """Messages and bytes through the broker since it started."""
        with self._lock:
            if not (self.running and self._proxying.is_set()) or self._control is None:
                return BrokerStatistics(0, 0, 0, 0)
            self._control.send(b"STATISTICS")
            if not self._control.poll(1000):
                raise BusError("the broker did not answer a STATISTICS request within 1 s")
            frames = self._control.recv_multipart()
        values = [struct.unpack("=Q", frame)[0] for frame in frames]
        # frontend (XSUB): msgs in, bytes in, msgs out, bytes out; then backend (XPUB).
        return BrokerStatistics(
            frames_in=values[0],
            bytes_in=values[1],
            frames_out=values[6],
            bytes_out=values[7],
            denied=values[8] if len(values) > 8 else 0,
        )

    def close(self) -> None:
        """Stop proxying and release the endpoints (idempotent)."""
        with self._lock:
            if self._control is None:
                return
            self._stopping.set()
            beat, self._beat_thread = self._beat_thread, None
            if beat is not None:
                beat.join(timeout=5)
            if self.running:
                self._control.send(b"TERMINATE")
            thread, self._thread = self._thread, None
            if thread is not None:
                thread.join(timeout=5)
            self._control.close(0)
            self._control = None
            if self.curve is not None:
                self.curve.release(self._context, self._domain)


def broker_for(
    settings: BusConfig,
    addresses: list[BusAddress],
    context: zmq.Context | None = None,
    *,
    project_dir: Path | None = None,
    access: Access | None = None,
    listeners: Listeners | None = None,
) -> Broker:
    """A broker bound to ``addresses`` as ``[bus]`` says (limits, beat, security; the
    keys folder is relative to ``project_dir``, default the current folder), applying
    ``access`` (the project's ``[acl.<identity>]`` and ``[tenants.<name>]``) on a CURVE bus,
    counting subscriptions in ``listeners`` when given."""
    folder = keys_folder(settings.keys, project_dir or Path.cwd())
    curve = server_curve(settings.security, folder, settings.allow)
    guard = None
    if curve is not None:
        access = access or Access()
        guard = Guard(
            access.acl,
            tenants=access.tenants,
            host=settings.identity,
            operators=settings.operators,
        )
    return Broker(
        addresses,
        context=context,
        hwm=settings.hwm,
        max_message_size=settings.max_message_size,
        beat_interval=settings.beat_interval,
        curve=curve,
        guard=guard,
        listeners=listeners,
    )


def _private(address: BusAddress) -> BusAddress:
    """``ipc://`` socket files readable and writable by this user only."""
    for endpoint in (address.publish, address.subscribe):
        if endpoint.startswith("ipc://"):
            with contextlib.suppress(OSError):  # an abstract socket (ipc://@name) has no file
                os.chmod(endpoint[len("ipc://") :], 0o600)
    return address


def _settle(xpub: zmq.Socket, seconds: float) -> None:
    """Let subscribers reconnect before the proxy forwards anything: their subscriptions
    are read (and so live) at the XPUB side meanwhile; the XSUB side, left unread, keeps
    the publishers' events queued."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        if xpub.poll(max(1, int(left * 1000))):
            xpub.recv_multipart()


def _bind(sock: zmq.Socket, endpoint: str) -> str:
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        raise BusError(
            f"cannot bind the bus at {endpoint}: {exc.strerror}. Is another bus running there? "
            'Join it instead (leave [bus] mode = "auto"), or pick another [bus] url.'
        ) from None
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def _bind_pair(xsub: zmq.Socket, xpub: zmq.Socket, address: BusAddress) -> BusAddress:
    """Bind both sockets; ``tcp://host:0`` picks free ports P and P+1, so the bus has a URL."""
    if not (address.publish.startswith("tcp://") and address.publish.endswith(":0")):
        return BusAddress(_bind(xsub, address.publish), _bind(xpub, address.subscribe))
    host = address.publish[len("tcp://") : -len(":0")]
    for _ in range(100):
        try:
            port = xsub.bind_to_random_port(f"tcp://{host}", min_port=20_000, max_port=64_000)
        except zmq.ZMQError as exc:
            raise BusError(f"cannot bind the bus on {host}: {exc}") from None
        try:
            xpub.bind(f"tcp://{host}:{port + 1}")
        except zmq.ZMQError:
            xsub.unbind(f"tcp://{host}:{port}")
            continue
        return BusAddress(f"tcp://{host}:{port}", f"tcp://{host}:{port + 1}")
    raise BusError(f"found no free pair of adjacent ports on {host} for the bus")
