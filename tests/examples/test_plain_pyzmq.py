"""examples/plain_pyzmq.py, a program that never imports Loom, against a real Loom runtime.

Each test runs the example as a child process on the test's own embedded bus (found
through the project's ``.loom/bus.json``, or named with ``--bus`` on a free port).
"""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from loom_kernel import Agent, RemoteError, Runtime, on_event, open_runtime, topic_matches
from loom_kernel.protocol.topics import compile_pattern
from tests.conftest import PYTHON, REPO, free_port, python_env

pytestmark = pytest.mark.multiprocess

EXAMPLE = REPO / "examples" / "plain_pyzmq.py"
WAIT = 15.0


class Collector(Agent):
    """Keeps every event on ``demo.*``; ``enough`` is set once it has ``want`` of them."""

    def __init__(self, want: int):
        super().__init__("collector")
        self.want = want
        self.events: list = []
        self.enough = asyncio.Event()

    @on_event("demo.*")
    async def collect(self, event, ctx):
        self.events.append(event)
        if len(self.events) >= self.want:
            self.enough.set()


@asynccontextmanager
async def plain(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """The example running as a child process; killed on exit if still running."""
    proc = await asyncio.create_subprocess_exec(
        PYTHON,
        str(EXAMPLE),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=python_env(),
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def wait_ready(proc: asyncio.subprocess.Process) -> None:
    """Read the child's stderr until it says its subscription is live."""
    async with asyncio.timeout(WAIT):
        while (line := await proc.stderr.readline()) != b"ready\n":
            if not line:
                raise AssertionError(f"the example exited before it was ready: {await proc.wait()}")


async def finished(proc: asyncio.subprocess.Process) -> list[dict]:
    """Wait for a successful exit; the JSON lines it printed."""
    stdout, stderr = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, stderr.decode()
    return [json.loads(line) for line in stdout.splitlines()]


def test_example_imports_only_zmq_and_the_standard_library():
    tree = ast.parse(EXAMPLE.read_text())
    modules = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    modules |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    foreign = modules - set(sys.stdlib_module_names) - {"__future__", "zmq"}
    assert foreign == set()


def load_example():
    spec = importlib.util.spec_from_file_location("plain_pyzmq", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("pattern", "topic"),
    [
        ("market.price.BTC", "market.price.BTC"),
        ("market.price.BTC", "market.price.BTCUSD"),
        ("market.price.BTC", "market.price.BTC.spot"),
        ("market.price.*", "market.price.BTC.spot"),
        ("market.price.*", "market.price"),
        ("market.price.*", "market.prices.X"),
        ("market.*.BTC", "market.price.BTC"),
        ("market.*.BTC", "market.price.spot.BTC"),
        ("market.*.BTC.*", "market.price.BTC"),
        ("*.BTC", "BTC"),
        ("*", "a.b.c"),
    ],
)
def test_example_topic_rules_agree_with_loom(pattern, topic):
    example = load_example()
    assert example.topic_matches(pattern, topic) == topic_matches(pattern, topic)
    assert example.subscription_prefix(pattern) == compile_pattern(pattern).prefix


async def test_plain_publisher_reaches_a_loom_handler(rt: Runtime, project: Path):
    agent = Collector(want=3)
    await rt.start(agent)
    args = ("publish", "demo.plain", '{"n": 1}', "--count", "3", "--project", str(project))
    async with plain(*args) as proc:
        await finished(proc)
    await asyncio.wait_for(agent.enough.wait(), WAIT)
    assert [event.data for event in agent.events] == [{"n": 1}] * 3
    assert [event.seq for event in agent.events] == [1, 2, 3]
    assert {(event.source, event.type, event.topic) for event in agent.events} == {
        (f"plain-{proc.pid}", "event", "demo.plain")
    }
    stats = rt.client.statistics()
    assert (stats.malformed, stats.gaps) == (0, 0)


async def test_loom_emit_reaches_the_plain_subscriber_exact_topic_only(rt: Runtime, project: Path):
    args = ("subscribe", "market.price.BTC", "--count", "2", "--timeout", str(WAIT))
    async with plain(*args, "--project", str(project)) as proc:
        await wait_ready(proc)
        # Same publisher, same path: had BTCUSD or BTC.spot passed the filter, they would
        # have been printed before the second BTC.
        for topic, price in [
            ("market.price.BTCUSD", 1),
            ("market.price.BTC", 2),
            ("market.price.BTC.spot", 3),
            ("market.price.BTC", 4),
        ]:
            await rt.emit(topic, {"price": price})
        lines = await finished(proc)
    assert [(line["topic"], line["data"], line["seq"]) for line in lines] == [
        ("market.price.BTC", {"price": 2}, 1),
        ("market.price.BTC", {"price": 4}, 2),
    ]
    assert {(line["v"], line["source"]) for line in lines} == {(1, rt.context.agent_id)}


async def test_plain_subscriber_trailing_wildcard_matches_one_or_more_segments(
    rt: Runtime, project: Path
):
    args = ("subscribe", "market.price.*", "--count", "3", "--timeout", str(WAIT))
    async with plain(*args, "--project", str(project)) as proc:
        await wait_ready(proc)
        for topic in [
            "market.prices.X",
            "market.price",
            "market.price.BTC",
            "market.price.BTC.spot",
            "market.price.ETH",
        ]:
            await rt.emit(topic, topic)
        lines = await finished(proc)
    assert [line["data"] for line in lines] == [
        "market.price.BTC",
        "market.price.BTC.spot",
        "market.price.ETH",
    ]


async def test_loom_request_is_answered_by_the_plain_responder(rt: Runtime, project: Path):
    args = ("respond", "demo.echo", "--count", "1", "--timeout", str(WAIT))
    async with plain(*args, "--project", str(project)) as proc:
        await wait_ready(proc)
        reply = await rt.request("demo.echo", {"x": 1}, timeout=WAIT)
        await finished(proc)
    assert (reply.type, reply.data, reply.hops) == ("reply", {"echo": {"x": 1}}, 1)
    assert reply.source == f"plain-{proc.pid}"


async def test_plain_error_reply_raises_remote_error(rt: Runtime, project: Path):
    args = ("respond", "demo.echo", "--error", "no such symbol", "--count", "1")
    async with plain(*args, "--timeout", str(WAIT), "--project", str(project)) as proc:
        await wait_ready(proc)
        with pytest.raises(RemoteError, match="PlainError: no such symbol"):
            await rt.request("demo.echo", {"x": 1}, timeout=WAIT)
        await finished(proc)


async def test_malformed_frames_are_counted_and_later_events_still_arrive(
    rt: Runtime, project: Path
):
    agent = Collector(want=1)
    await rt.start(agent)
    before = rt.client.statistics().malformed
    args = ("publish", "demo.plain", '{"ok": true}', "--malformed", "--project", str(project))
    async with plain(*args) as proc:
        await finished(proc)
    # The five broken messages left before the good one on the same socket and path.
    await asyncio.wait_for(agent.enough.wait(), WAIT)
    assert [event.data for event in agent.events] == [{"ok": True}]
    assert rt.client.statistics().malformed == before + 5


async def test_bus_url_means_publish_on_port_and_subscribe_on_the_next(project: Path):
    port = free_port()
    config = project / "loom.toml"
    config.write_text(
        config.read_text() + f'[bus]\nmode = "embedded"\nurl = "tcp://127.0.0.1:{port}"\n'
    )
    async with open_runtime(config) as runtime:
        args = ("respond", "demo.echo", "--count", "1", "--timeout", str(WAIT))
        async with plain(*args, "--bus", f"tcp://127.0.0.1:{port}") as proc:
            await wait_ready(proc)
            reply = await runtime.request("demo.echo", "hi", timeout=WAIT)
            await finished(proc)
    assert reply.data == {"echo": "hi"}
