"""A CURVE bus against an outsider, with real sockets on loopback (docs/security.md).

Each attack is tried twice: on a plain bus, where it works (so the test can fail), and on a
CURVE bus, where it must not. The outsider is a plain pyzmq program, or a Loom client
holding a key pair the broker does not admit.
"""

from __future__ import annotations

import asyncio
import contextlib
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import zmq

from loom_kernel import open_runtime
from loom_kernel.bus.zeromq import Broker, BusAddress, BusClient, read_discovery
from loom_kernel.bus.zeromq.discovery import discovery_path
from loom_kernel.errors import BusError, ConfigError
from loom_kernel.security import (
    Gatekeeper,
    ServerCurve,
    client_curve,
    generate_keys,
    load_public_key,
    server_curve,
)
from tests.kernel.bus.zeromq.test_client import event, raw_frames

WAIT = 5.0  # the bound of every wait for something that must happen
WINDOW = 1.0  # how long an attack is given to succeed where it must not
SECURITY = ["none", "curve"]


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """broker, alice (admitted) and mallory (a valid pair the broker does not admit)."""
    folder = tmp_path_factory.mktemp("keys")
    for name in ("broker", "alice", "mallory"):
        generate_keys(folder, name)
    return folder


@pytest.fixture(params=SECURITY)
def bus(request: pytest.FixtureRequest, keys: Path) -> Iterator[tuple[BusAddress, str]]:
    """A broker on free loopback ports, plain or CURVE (admitting alice only)."""
    security = request.param
    broker = Broker(
        [BusAddress.parse("tcp://127.0.0.1:0")],
        context=zmq.Context.instance(),
        curve=server_curve(security, keys, ["alice"]),
    )
    [address] = broker.start()
    yield address, security
    broker.close()


@pytest.fixture
async def alice(bus: tuple[BusAddress, str], keys: Path) -> AsyncIterator[BusClient]:
    address, security = bus
    client = BusClient(address, name="alice", curve=client_curve(security, keys, "alice"))
    await client.connect(WAIT)
    yield client
    await client.aclose()


@contextlib.contextmanager
def outsider(kind: int, endpoint: str) -> Iterator[zmq.Socket]:
    """A plain pyzmq socket with no credentials."""
    sock = zmq.Context.instance().socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if kind == zmq.SUB:
        sock.subscribe(b"")
    sock.connect(endpoint)
    try:
        yield sock
    finally:
        sock.close(0)


async def test_an_outsider_reads_nothing(bus: tuple[BusAddress, str], alice: BusClient) -> None:
    address, security = bus
    with outsider(zmq.SUB, address.subscribe) as sniffer:
        heard = await _heard(sniffer, lambda: alice.publish(event("tool.reply", "secret")))
    assert heard == (security == "none")


async def test_an_outsider_cannot_publish(bus: tuple[BusAddress, str], alice: BusClient) -> None:
    address, security = bus
    orders = await alice.subscribe("orders.*")
    with outsider(zmq.PUB, address.publish) as forger:
        arrived = False
        deadline = asyncio.get_running_loop().time() + WINDOW
        while not arrived and asyncio.get_running_loop().time() < deadline:
            forger.send_multipart(raw_frames("orders.new", {"qty": 10**6}, source="alice"))
            with contextlib.suppress(TimeoutError):
                await orders.get(timeout=0.02)
                arrived = True
    assert arrived == (security == "none")


async def test_an_unadmitted_key_cannot_join(
    bus: tuple[BusAddress, str], keys: Path, alice: BusClient
) -> None:
    address, security = bus
    mallory = BusClient(address, name="mallory", curve=client_curve(security, keys, "mallory"))
    keeper = Gatekeeper.of(zmq.Context.instance())
    refused = keeper.refused
    try:
        if security == "none":
            await mallory.connect(WAIT)  # anyone joins a plain bus
            return
        with pytest.raises(BusError, match=r"refused this process's key pair"):
            await mallory.connect(WINDOW)
        assert keeper.refused > refused
    finally:
        await mallory.aclose()


async def test_a_client_without_keys_is_told_the_bus_may_be_secured(
    keys: Path,
) -> None:
    broker = Broker(
        [BusAddress.parse("tcp://127.0.0.1:0")], curve=server_curve("curve", keys, ["alice"])
    )
    [address] = broker.start()
    try:
        plain = BusClient(address, name="plain")
        with pytest.raises(BusError, match=r'security = "curve"'):
            await plain.connect(WINDOW)
    finally:
        broker.close()


async def test_a_client_that_trusts_another_broker_key_does_not_connect(keys: Path) -> None:
    """A client checks the broker too: one answering with another key is not the bus."""
    # a broker of its own key pair that would admit alice's key
    impostor_keys = generate_keys(keys.parent / "impostor", "broker")
    admits_alice = {load_public_key(keys, "alice").public: "alice"}
    impostor = Broker(
        [BusAddress.parse("tcp://127.0.0.1:0")], curve=ServerCurve(impostor_keys, admits_alice)
    )
    [address] = impostor.start()
    try:
        client = BusClient(address, name="alice", curve=client_curve("curve", keys, "alice"))
        with pytest.raises(BusError):
            await client.connect(WINDOW)
    finally:
        impostor.close()


def test_a_check_that_fails_refuses() -> None:
    class Broken(dict):  # type: ignore[type-arg]
        def __contains__(self, key: object) -> bool:
            raise RuntimeError("the key store is down")

    keeper = Gatekeeper.of(zmq.Context.instance())
    keeper.admit("broken-domain", Broken())
    try:
        assert keeper.callback("broken-domain", b"x" * 40) is False
        assert keeper.callback("no-such-domain", b"x" * 40) is False
    finally:
        keeper.forget("broken-domain")


def test_a_curve_broker_needs_an_admitted_key(tmp_path: Path) -> None:
    generate_keys(tmp_path, "broker")
    with pytest.raises(ConfigError, match="no client key is admitted"):
        server_curve("curve", tmp_path)
    with pytest.raises(ConfigError, match="`loom keys generate bob`"):
        server_curve("curve", tmp_path, ["bob"])
    assert server_curve("none", tmp_path) is None


def test_ipc_socket_files_are_private(tmp_path: Path, keys: Path) -> None:
    path = tmp_path / "bus"
    broker = Broker([BusAddress.parse(f"ipc://{path}")], curve=server_curve("curve", keys))
    broker.start()
    try:
        for end in (".in", ".out"):
            assert stat.S_IMODE((tmp_path / f"bus{end}").stat().st_mode) == 0o600
    finally:
        broker.close()


async def test_a_curve_project_end_to_end(project: Path) -> None:
    """loom.toml says curve: the runtime that embeds the bus and one that joins it through
    the discovery file talk; an outsider at the discovered address hears nothing."""
    (project / "loom.toml").write_text('[bus]\nsecurity = "curve"\n')
    with pytest.raises(ConfigError, match="loom keys generate"):
        await open_runtime(project / "loom.toml")
    for name in ("broker", "loom"):
        generate_keys(project / ".loom" / "keys", name)
    async with open_runtime(project / "loom.toml") as host:
        assert stat.S_IMODE(discovery_path(project).stat().st_mode) == 0o600
        record = read_discovery(project)
        assert record is not None
        async with open_runtime(project / "loom.toml") as guest:
            assert not guest.embedded  # it joined over tcp, with its key pair
            seen = await host.subscribe("desk.quote")
            with outsider(zmq.SUB, record.address.subscribe) as sniffer:
                await guest.emit("desk.quote", {"px": 1})
                assert (await seen.get(timeout=WAIT)).data == {"px": 1}
                heard = await _heard(sniffer, lambda: None)
            assert not heard


async def _heard(sniffer: zmq.Socket, send: object) -> bool:
    """Whether ``sniffer`` receives anything within the window while ``send()`` runs."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WINDOW
    while loop.time() < deadline:
        send()  # type: ignore[operator]
        await asyncio.sleep(0.01)
        if sniffer.poll(0):
            return True
    return False
