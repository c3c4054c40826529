"""The broker and bus addresses (SPEC Kernel 1)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import zmq

from loom_kernel.bus.zeromq import Broker, BrokerStatistics, BusAddress
from loom_kernel.bus.zeromq.client import BusClient
from loom_kernel.errors import BusError
from loom_kernel.protocol.envelope import Envelope
from tests.conftest import free_port

# -- addresses -------------------------------------------------------------------------


def test_tcp_url_uses_port_and_its_successor() -> None:
    address = BusAddress.parse("tcp://127.0.0.1:7355")
    assert address == BusAddress("tcp://127.0.0.1:7355", "tcp://127.0.0.1:7356")


def test_tcp_url_with_port_zero_asks_for_two_random_ports() -> None:
    assert BusAddress.parse("tcp://127.0.0.1:0") == BusAddress(
        "tcp://127.0.0.1:0", "tcp://127.0.0.1:0"
    )


def test_tcp_url_highest_usable_port() -> None:
    assert BusAddress.parse("tcp://h:65534").subscribe == "tcp://h:65535"


@pytest.mark.parametrize(
    ("url", "publish", "subscribe"),
    [
        ("ipc:///tmp/loom/bus", "ipc:///tmp/loom/bus.in", "ipc:///tmp/loom/bus.out"),
        ("inproc://loom-bus", "inproc://loom-bus.in", "inproc://loom-bus.out"),
    ],
)
def test_ipc_and_inproc_urls_get_in_and_out_suffixes(
    url: str, publish: str, subscribe: str
) -> None:
    assert BusAddress.parse(url) == BusAddress(publish, subscribe)


def test_address_to_dict() -> None:
    assert BusAddress.parse("inproc://x").to_dict() == {
        "publish": "inproc://x.in",
        "subscribe": "inproc://x.out",
    }


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:7355", "expected tcp://host:port"),
        ("tcp://", "expected tcp://host:port"),
        ("", "expected tcp://host:port"),
        ("tcp://127.0.0.1", "needs host and port"),
        ("tcp://:7355", "needs host and port"),
        ("tcp://127.0.0.1:http", "needs host and port"),
        ("tcp://127.0.0.1:-1", "needs host and port"),
        ("tcp://127.0.0.1:65535", "port must be in 1..65534"),
        ("tcp://127.0.0.1:99999", "port must be in 1..65534"),
        ("udp://127.0.0.1:7355", "unknown transport 'udp'"),
        ("http://localhost:7355", "unknown transport 'http'"),
    ],
)
def test_bad_url_gives_bus_error(url: str, message: str) -> None:
    with pytest.raises(BusError, match=message):
        BusAddress.parse(url)


# -- the broker ------------------------------------------------------------------------


@pytest.fixture
def broker() -> Iterator[Broker]:
    broker = Broker([BusAddress.parse("tcp://127.0.0.1:0")])
    broker.start()
    yield broker
    broker.close()


def test_broker_binds_tcp_port_zero_to_real_ports(broker: Broker) -> None:
    assert broker.running
    [address] = broker.addresses
    for endpoint in (address.publish, address.subscribe):
        assert endpoint.startswith("tcp://127.0.0.1:")
        assert int(endpoint.rsplit(":", 1)[1]) > 0
    assert address.publish != address.subscribe


def test_broker_start_returns_the_bound_addresses() -> None:
    port = free_port()
    broker = Broker([BusAddress.parse(f"tcp://127.0.0.1:{port}")])
    try:
        assert broker.start() == [
            BusAddress(f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port + 1}")
        ]
    finally:
        broker.close()


async def test_broker_binds_inproc_and_tcp_at_once() -> None:
    context = zmq.Context.instance()
    name = f"inproc://test-bus-{id(object()):x}"
    addresses = [BusAddress.parse(name), BusAddress.parse("tcp://127.0.0.1:0")]
    broker = Broker(addresses, context=context)
    inproc, tcp = broker.start()
    try:
        assert inproc == BusAddress(f"{name}.in", f"{name}.out")
        async with (
            BusClient(inproc, context=context) as local,
            BusClient(tcp) as remote,
        ):
            from_remote = await local.subscribe("from.remote")
            from_local = await remote.subscribe("from.local")
            remote.publish(Envelope(topic="from.remote", data=None))
            local.publish(Envelope(topic="from.local", data=None))
            assert (await from_remote.get(timeout=5)).topic == "from.remote"
            assert (await from_local.get(timeout=5)).topic == "from.local"
    finally:
        broker.close()


def test_bind_conflict_gives_clear_bus_error(broker: Broker) -> None:
    taken = broker.addresses[0].publish
    port = int(taken.rsplit(":", 1)[1])
    second = Broker([BusAddress(taken, "tcp://127.0.0.1:0")])
    with pytest.raises(BusError) as caught:
        second.start()
    message = str(caught.value)
    assert f"cannot bind the bus at tcp://127.0.0.1:{port}" in message
    assert "Is another bus running there?" in message
    assert "[bus] url" in message
    assert not second.running
    second.close()


def test_inproc_bind_conflict_gives_bus_error() -> None:
    context = zmq.Context.instance()
    address = BusAddress.parse(f"inproc://conflict-{id(object()):x}")
    first = Broker([address], context=context)
    first.start()
    try:
        with pytest.raises(BusError, match=f"cannot bind the bus at {address.publish}"):
            Broker([address], context=context).start()
    finally:
        first.close()


def test_failed_start_leaves_no_bound_addresses(broker: Broker) -> None:
    taken = broker.addresses[0].publish
    second = Broker([BusAddress.parse("tcp://127.0.0.1:0"), BusAddress(taken, taken)])
    with pytest.raises(BusError):
        second.start()
    assert second.addresses == []


def test_broker_needs_an_address() -> None:
    with pytest.raises(BusError, match="at least one address"):
        Broker([])


def test_broker_cannot_start_twice(broker: Broker) -> None:
    with pytest.raises(BusError, match="already started"):
        broker.start()


async def test_statistics_count_frames(broker: Broker) -> None:
    # the subscriber in another client: a client's own subscriptions get its events in
    # process, before the broker has counted them
    async with BusClient(broker.addresses[0]) as client, BusClient(broker.addresses[0]) as other:
        sub = await other.subscribe("stats.*")
        # subscribe() may have sent its probe more than once: let every copy pass first.
        client.publish(Envelope(topic="stats.barrier"))
        await sub.get(timeout=5)
        before = broker.statistics()
        events = 25
        for n in range(events):
            client.publish(Envelope(topic=f"stats.{n}", payload=b"12345"))
        for _ in range(events):
            await sub.get(timeout=5)
        after = broker.statistics()
    assert isinstance(after, BrokerStatistics)
    # A Loom event is three frames; ZeroMQ counts frames.
    assert after.frames_in - before.frames_in == 3 * events
    assert after.frames_out - before.frames_out == 3 * events
    assert after.bytes_in - before.bytes_in > 5 * events
    assert after.bytes_out - before.bytes_out == after.bytes_in - before.bytes_in
    assert set(after.to_dict()) == {"frames_in", "bytes_in", "frames_out", "bytes_out", "denied"}


def test_statistics_of_a_stopped_broker_are_zero() -> None:
    broker = Broker([BusAddress.parse("tcp://127.0.0.1:0")])
    assert broker.statistics() == BrokerStatistics(0, 0, 0, 0)
    broker.start()
    broker.close()
    assert broker.statistics() == BrokerStatistics(0, 0, 0, 0)


def test_close_is_idempotent() -> None:
    broker = Broker([BusAddress.parse("tcp://127.0.0.1:0")])
    broker.close()  # never started
    broker.start()
    broker.close()
    assert not broker.running
    broker.close()
    assert not broker.running


async def test_closed_broker_no_longer_answers() -> None:
    broker = Broker([BusAddress.parse("tcp://127.0.0.1:0")])
    [address] = broker.start()
    async with BusClient(address) as client:
        await client.subscribe("before.close")
    broker.close()
    with pytest.raises(BusError, match="no bus answered"):
        await BusClient(address).connect(timeout=0.3)


async def test_broker_forwards_malformed_frames_and_keeps_running(broker: Broker) -> None:
    [address] = broker.addresses
    async with BusClient(address) as client:
        sub = await client.subscribe("after.garbage")
        raw = zmq.Context.instance().socket(zmq.PUB)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(address.publish)
        try:
            # The raw socket is live once one of its events arrives.
            async def until_live() -> None:
                while client.statistics().malformed == 0:
                    raw.send_multipart([b"after.garbage.bad"])
                    await asyncio.sleep(0.005)

            await asyncio.wait_for(until_live(), 5)
        finally:
            raw.close(0)
        assert broker.running
        client.publish(Envelope(topic="after.garbage"))
        assert (await sub.get(timeout=5)).topic == "after.garbage"
