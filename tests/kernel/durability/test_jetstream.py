"""Durability on NATS: JetStream as the event log, against real nats-server processes
(issue 25, parts 3 and 5): reliable publishing, durable consumers across an agent's
restart, a ``kill -9`` of the subscriber, the loss of a cluster node mid-stream, and
replay from the stream."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from loom_kernel import Agent, ConfigError, on_event, open_runtime
from loom_kernel.bus.nats.server import LocalCluster
from loom_kernel.durability import REPLAYED_TS_HEADER
from loom_kernel.durability.jetstream import consumer_name, covers
from loom_kernel.protocol.topics import compile_pattern
from tests.conftest import PYTHON, python_env
from tests.kernel.durability.test_reliable_delivery import handled, line_from, spawn, wait_for
from tests.support.nats import nats_cluster, nats_server, nats_toml

__all__ = ["nats_cluster", "nats_server"]
pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(120)]
WAIT = 10.0
RECORDED = 'topics = ["orders.*", "load.*"]\nreliable = ["orders.*", "load.*"]\n'
RELIABLE = "[eventlog]\nenabled = true\n" + RECORDED


def configure(project: Path, urls: list[str], extra: str = "") -> Path:
    path = project / "loom.toml"
    path.write_text(nats_toml(urls, extra) + "[tracing]\nenabled = false\n" + RELIABLE)
    return path


class Sink(Agent):
    """Keeps the data of every order it handles."""

    def __init__(self, agent_id: str):
        super().__init__(agent_id)
        self.got: list[object] = []

    @on_event("orders.*")
    async def take(self, event, ctx):
        self.got.append(event.data)


# -- what the stream and its consumers are made of ---------------------------------------

COVERS = [
    ("orders.*", "orders.new", True),
    ("orders.*", "orders.new.AAPL", True),
    ("orders.*", "orders.*", True),
    ("orders.*", "orders", False),
    ("orders.*", "*", False),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.*.c", True),
    ("a.*.c", "a.*", False),
    ("a.b", "a.*", False),
    ("a.b.c", "a.b.c.d", False),
    ("*", "anything.at.all", True),
]


@pytest.mark.parametrize(("outer", "inner", "expected"), COVERS)
def test_which_subscriptions_a_stream_covers(outer: str, inner: str, expected: bool) -> None:
    assert covers(compile_pattern(outer), compile_pattern(inner)) is expected


def test_consumer_names_are_what_jetstream_allows() -> None:
    assert consumer_name("risk-1", "orders.*") == "risk-1-orders_ALL"
    assert consumer_name("a b", "x.y") == "a_b-x_y"


async def test_recording_every_topic_is_refused_with_the_fix(
    nats_server: LocalCluster, project: Path
) -> None:
    path = project / "loom.toml"
    path.write_text(nats_toml(nats_server.urls) + "[eventlog]\nenabled = true\n")
    with pytest.raises(ConfigError, match=r"name the application\'s topics instead, e\.g\."):
        async with open_runtime(path):
            pass


async def test_a_reliable_topic_the_stream_does_not_record_is_refused(
    nats_server: LocalCluster, project: Path
) -> None:
    path = project / "loom.toml"
    path.write_text(
        nats_toml(nats_server.urls)
        + '[eventlog]\nenabled = true\ntopics = ["orders.*"]\nreliable = ["fills.*"]\n'
    )
    with pytest.raises(ConfigError, match=r"'fills.\*' is not in \[eventlog\] topics"):
        async with open_runtime(path):
            pass


# -- reliable publishing and durable consumers --------------------------------------------


async def test_reliable_events_are_acknowledged_and_kept_in_the_stream(
    nats_server: LocalCluster, project: Path
) -> None:
    async with open_runtime(configure(project, nats_server.urls)) as rt:
        for i in range(300):
            await rt.emit("orders.new", {"i": i})
        await rt.wait_acknowledged(WAIT)
        stats = rt.transport.statistics().durability
        assert (stats["acked"], stats["in_flight"], stats["stream"]) == (300, 0, "LOOM")
        info = await rt.client.connection.jetstream().stream_info("LOOM")
        assert info.state.messages == 300


async def test_an_agent_gets_what_was_published_while_it_was_away(
    nats_server: LocalCluster, project: Path
) -> None:
    config = configure(project, nats_server.urls)
    async with open_runtime(config) as publisher:
        async with open_runtime(config) as first:
            sink = Sink("sink")
            await first.start(sink)
            await publisher.emit("orders.new", "before")
            await wait_for(lambda: sink.got == ["before"], WAIT, "the first order")
        for i in range(50):  # the sink's process is gone
            await publisher.emit("orders.new", i)
        await publisher.wait_acknowledged(WAIT)
        async with open_runtime(config) as second:
            again = Sink("sink")
            await second.start(again)
            await publisher.emit("orders.new", "after")  # comes after anything owed
            await wait_for(lambda: again.got[-1:] == ["after"], WAIT, "the missed orders")
            assert again.got == [*range(50), "after"]  # no duplicate of "before"
            subs = second.transport.statistics().subscriptions
            durable = next(s for s in subs if s.get("consumer") == "sink-orders_ALL")
            assert durable["duplicates"] == 0


async def test_a_killed_subscriber_misses_nothing_and_repeats_nothing(
    nats_server: LocalCluster, project: Path
) -> None:
    configure(project, nats_server.urls)
    count, rate = 4000, 1000
    first, second = project / "first.txt", project / "second.txt"
    sink = await spawn(project, "durable_sink", str(first))
    assert await line_from(sink) == "ready"
    publisher = await spawn(project, "load_publisher", "load.x", str(count), str(rate))
    try:
        await wait_for(lambda: len(handled(first)) >= count // 4, 60.0, "a quarter handled")
        os.kill(sink.pid, signal.SIGKILL)
        await sink.wait()
        killed_at = len(handled(first))
        sink = await spawn(project, "durable_sink", str(second))
        assert await line_from(sink) == "ready"
        assert (await line_from(publisher, 120.0)).startswith(f"sent {count}")
        everything = lambda: len({*handled(first), *handled(second)}) >= count  # noqa: E731
        await wait_for(everything, 60.0, "every event handled")  # redeliveries included
    finally:
        for proc in (sink, publisher):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert killed_at < count, "the sink was killed after the publisher had finished"
    seqs = [seq for _, seq in handled(first) + handled(second)]
    assert sorted(set(seqs)) == list(range(1, count + 1)), "lost events"
    repeated = [seq for seq, n in Counter(seqs).items() if n > 1]
    assert repeated == [], f"handled twice: {repeated}"
    print(f"kill -9 of the subscriber at {killed_at}/{count}: 0 lost, 0 handled twice")


async def test_losing_a_cluster_node_mid_stream_loses_and_repeats_nothing(
    nats_cluster: LocalCluster, project: Path
) -> None:
    config = configure(project, nats_cluster.urls, "stream_replicas = 3\n")
    count = 3000
    async with open_runtime(config) as consumer, open_runtime(config) as producer:
        sink = Sink("sink")
        await consumer.start(sink)
        info = await producer.client.connection.jetstream().stream_info("LOOM")
        leader = int(info.cluster.leader.removeprefix("n"))  # the stream's leader: the worst
        started = time.monotonic()
        for i in range(count):
            await producer.emit("orders.new", i)
            if i == count // 3:
                await nats_cluster.kill(leader)
            if i % 50 == 0:
                await asyncio.sleep(0.01)  # ~ 3,000 events/s
        await producer.wait_acknowledged(60)
        await wait_for(lambda: len(set(sink.got)) >= count, 60.0, "every order handled")
        seconds = time.monotonic() - started
        stats = producer.transport.statistics().durability
    assert sorted(sink.got) == list(range(count)), "lost or repeated orders"
    assert len(sink.got) == count
    print(
        f"stream leader n{leader} killed mid-stream: {count} orders in {seconds:.1f} s, 0 lost, "
        f"0 handled twice, {stats['resent']} sent again to JetStream"
    )


# -- replay from the stream ------------------------------------------------------------------


class Watcher(Agent):
    def __init__(self, agent_id: str):
        super().__init__(agent_id)
        self.got: asyncio.Queue = asyncio.Queue()

    @on_event("orders.*")
    async def watch(self, event, ctx):
        self.got.put_nowait(event)


async def test_loom_replay_reads_the_stream_into_a_namespace(
    nats_server: LocalCluster, project: Path
) -> None:
    config = configure(project, nats_server.urls)
    async with open_runtime(config) as rt:
        for i in range(5):
            await rt.emit("orders.old", i)
        await rt.wait_acknowledged(WAIT)  # stored, so stamped before this instant
        since = time.time()
        for i in range(20):
            await rt.emit("orders.new", i)
        await rt.emit("load.other", 0)
        await rt.wait_acknowledged(WAIT)
        async with open_runtime(config, namespace="what-if") as sandbox:
            inside = Watcher("inside")
            await sandbox.start(inside)
            done = await asyncio.to_thread(
                subprocess.run,
                [PYTHON, "-m", "loom_kernel.cli.app", "replay", "--from", str(since),
                 "--topics", "orders.*", "--speed", "0", "--into", "what-if"],
                cwd=project, env=python_env(), capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert "replayed 20 events from stream LOOM into replay.what-if.*" in done.stderr
            events = [await asyncio.wait_for(inside.got.get(), WAIT) for _ in range(20)]
    assert [e.data for e in events] == list(range(20))
    assert all(REPLAYED_TS_HEADER in (e.headers or {}) for e in events)


async def test_loom_log_records_a_nats_bus_into_the_sqlite_log_for_queries(
    nats_server: LocalCluster, project: Path
) -> None:
    """JetStream is the log reliable delivery and replay read; ``loom log`` still records
    the bus into the SQLite file that the studio's History and ``rt.event_log`` query."""
    config = project / "loom.toml"
    config.write_text(nats_toml(nats_server.urls) + "[tracing]\nenabled = false\n")
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "loom_kernel.cli.app", "log", "--stats-interval", "0.2",
        cwd=project, env=python_env(), stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert "recording the project's bus" in line, line
        async with open_runtime(config) as rt:
            for i in range(10):
                await rt.emit("orders.new", i)

            def recorded() -> int:
                try:
                    return len(rt.event_log.query(None, None, ["orders.*"]))
                except Exception:  # the file is being created
                    return 0

            await wait_for(lambda: recorded() >= 10, 20.0, "the orders recorded")
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), 30)
