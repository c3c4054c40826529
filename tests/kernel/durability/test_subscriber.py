"""Durable reliable subscriptions in one process: a cursor across a stop and a start, and
a gap repaired from the log."""

from __future__ import annotations

import asyncio
from pathlib import Path

from loom_kernel import Agent, Envelope, on_event, open_runtime
from loom_kernel.durability.wire import ACK_HEADER, CONTENT_TYPE, Store, encode
from loom_kernel.protocol import reserved
from loom_kernel.protocol.envelope import encode_data, encode_frames, new_id
from tests.conftest import WAIT


class Orders(Agent):
    def __init__(self, agent_id: str):
        super().__init__(agent_id)
        self.got: asyncio.Queue[Envelope] = asyncio.Queue()

    @on_event("orders.*")
    async def take(self, event, ctx):
        self.got.put_nowait(event)


def configure(project: Path) -> Path:
    path = project / "loom.toml"
    path.write_text("[runtime]\nheartbeat_interval = 0.2\n[eventlog]\nenabled = true\n")
    return path


async def take(agent: Orders, count: int) -> list[int]:
    return [(await asyncio.wait_for(agent.got.get(), WAIT)).data["i"] for _ in range(count)]


async def test_a_stopped_agent_gets_what_was_published_meanwhile_once(project: Path) -> None:
    async with open_runtime(configure(project)) as rt:
        await rt.start_event_log()
        first = Orders("orders")
        await rt.start(first)
        for i in range(10):
            await rt.emit("orders.new", {"i": i})
        assert await take(first, 10) == list(range(10))
        await rt.stop("orders")  # a clean stop: the cursor's last commit is awaited
        for i in range(10, 30):
            await rt.emit("orders.new", {"i": i})
        again = Orders("orders")
        await rt.start(again)
        for i in range(30, 36):
            await rt.emit("orders.new", {"i": i})
        # the replayed backlog first, then the live events, none twice: the last one
        # published is the 26th handled
        assert await take(again, 26) == list(range(10, 36))
    cursors = [c for c in rt.event_log.cursors() if c["name"] == "orders:orders.*"]
    assert cursors and cursors[0]["closed"]


async def test_a_gap_is_filled_from_the_log_in_order(project: Path) -> None:
    async with open_runtime(configure(project)) as rt:
        await rt.start_event_log()
        agent = Orders("orders")
        await rt.start(agent)
        epoch = new_id()[:12]
        events = [_event(seq, epoch) for seq in (1, 2, 3)]
        rt.client.publish(events[0])
        # the second reaches the log only (as a publisher sends it again), never live
        frames = encode_frames(events[1])
        store = Store([(frames[0].decode(), frames[1], frames[2])])
        rt.client.publish(
            Envelope(
                topic=reserved.EVENTLOG_STORE,
                source="test",
                payload=encode(store),
                content_type=CONTENT_TYPE,
            )
        )
        rt.client.publish(events[2])
        assert await take(agent, 3) == [1, 2, 3]
        durable = [s for s in rt.client.statistics().subscriptions if s["pattern"] == "orders.*"]
        assert durable[0]["replayed"] == 1 and durable[0]["lost"] == 0


async def test_an_event_whose_ttl_ran_out_in_the_log_is_not_replayed(project: Path) -> None:
    async with open_runtime(configure(project)) as rt:
        service = await rt.start_event_log()
        agent = Orders("orders")
        await rt.start(agent)
        await rt.emit("orders.new", {"i": 0})
        assert await take(agent, 1) == [0]
        await rt.stop("orders")
        short = await rt.emit("orders.new", {"i": 1}, ttl_ms=200)
        await rt.emit("orders.new", {"i": 2})
        await service.flush(WAIT)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT
        while not short.expired:  # its time runs out while the agent is stopped
            assert loop.time() < deadline
            await asyncio.sleep(0.02)
        again = Orders("orders")
        await rt.start(again)
        await rt.emit("orders.new", {"i": 3})
        assert await take(again, 2) == [2, 3]
        durable = [s for s in rt.client.statistics().subscriptions if s["pattern"] == "orders.*"]
        assert durable[0]["expired"] == 1


def _event(seq: int, epoch: str) -> Envelope:
    payload, content_type = encode_data({"i": seq})
    return Envelope(
        topic="orders.new",
        source="shop",
        id=f"{epoch}-{seq}",
        seq=seq,
        payload=payload,
        content_type=content_type,
        headers={ACK_HEADER: "nobody"},  # a reliable topic: the subscriber waits for it
    )
