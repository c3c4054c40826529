"""The JavaScript SDK (sdk/js) and Python agents on one real Loom bus.

Each test runs a Python runtime with an embedded broker and a Node process,
``sdk/js/test/interop/peer.mjs``, that finds the bus the way Python processes do (the
project's ``.loom/bus.json``), runs the agent ``js-peer`` and takes commands on stdin.
Events, requests and tool calls go both ways, and one trace crosses both languages.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from loom_kernel import Agent, RemoteError, Runtime, ToolError, on_event, open_runtime, tool
from loom_kernel.bus.zeromq import read_discovery
from tests.conftest import REPO, WAIT, wait_until
from tests.support.secured import joining_toml, secured_project

pytestmark = pytest.mark.node

SDK = REPO / "sdk" / "js"
PEER = SDK / "test" / "interop" / "peer.mjs"
NODE = shutil.which("node") or "node"


class PyPeer(Agent):
    """The Python side: answers, relays and keeps what the Node agent sends."""

    def __init__(self) -> None:
        super().__init__("py-peer")
        self.seen: list = []
        self.arrived = asyncio.Event()

    @on_event("js.saw.*")
    async def saw(self, event, ctx):
        self.seen.append(event)
        self.arrived.set()

    @on_event("py.echo")
    async def echo(self, event, ctx):
        await ctx.reply(event, {"echo": event.data, "from": "py"})

    @on_event("trace.start")
    async def relay(self, event, ctx):
        await ctx.emit("py.to.js.trace", event.data)

    @tool("py.add")
    async def add(self, a: int, b: int) -> int:
        """a + b, computed in Python."""
        return a + b


class NodePeer:
    """The Node process: one JSON command in, one JSON answer out."""

    def __init__(self, proc: asyncio.subprocess.Process, client_id: str):
        self.proc = proc
        self.client_id = client_id

    async def ask(self, **command: Any) -> dict[str, Any]:
        self.proc.stdin.write((json.dumps(command) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), WAIT * 2)
        assert line, f"the Node peer exited: {(await self.proc.stderr.read()).decode()}"
        return json.loads(line)


@asynccontextmanager
async def node_peer(cwd: Path) -> AsyncIterator[NodePeer]:
    """The peer, started in ``cwd`` (it finds its loom.toml there); ready when entered."""
    if not (SDK / "dist" / "index.js").is_file():
        pytest.fail("the JavaScript SDK is not built: run `make sdk-js` (npm ci, then tsc)")
    proc = await asyncio.create_subprocess_exec(
        NODE,
        str(PEER),
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), WAIT * 3)
        assert line, f"the Node peer exited: {(await proc.stderr.read()).decode()}"
        yield NodePeer(proc, json.loads(line)["ready"])
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), WAIT) == 0, (await proc.stderr.read()).decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def peers(rt: Runtime, project: Path) -> AsyncIterator[tuple[PyPeer, NodePeer]]:
    py = PyPeer()
    await rt.start(py)
    async with node_peer(project) as js:
        yield py, js


async def test_events_go_both_ways_keeping_thread_and_hops(rt: Runtime, peers) -> None:
    py, js = peers
    sent = await rt.emit("py.to.js.one", {"n": 1, "text": "héllo"})
    await asyncio.wait_for(py.arrived.wait(), WAIT)
    [answer] = py.seen
    assert (answer.topic, answer.data, answer.source) == ("js.saw.one", sent.data, "js-peer")
    assert (answer.hops, answer.thread_id, answer.seq) == (1, sent.id, 1)
    stats = (await js.ask(do="stats"))["client"]
    assert (stats["malformed"], stats["gaps"], stats["lost"]) == (0, 0, 0)
    assert rt.client.statistics().malformed == 0


async def test_a_python_request_is_answered_by_node_and_the_other_way(rt: Runtime, peers) -> None:
    _, js = peers
    reply = await rt.request("js.echo", {"x": 1}, timeout=WAIT)
    assert (reply.data, reply.source, reply.hops) == (
        {"echo": {"x": 1}, "from": "js"},
        "js-peer",
        1,
    )
    answer = await js.ask(do="request", topic="py.echo", data={"y": 2})
    assert answer == {
        "ok": True,
        "reply": {
            "data": {"echo": {"y": 2}, "from": "py"},
            "source": "py-peer",
            "type": "reply",
            "hops": 1,
        },
    }


async def test_a_node_request_nobody_answers_times_out_and_says_so(peers) -> None:
    _, js = peers
    answer = await js.ask(do="request", topic="nobody.home", timeout=200)
    assert (answer["ok"], answer["error"]) == (False, "RequestTimeout")
    assert 'no reply on "nobody.home" within 200 ms' in answer["message"]


async def test_python_calls_node_tools_with_their_schema_and_errors(rt: Runtime, peers) -> None:
    assert await rt.tool("js.double", {"x": 21}) == 42
    with pytest.raises(ToolError, match=r"tool js.double: argument 'x' is missing \(it takes: x\)"):
        await rt.tool("js.double", {})
    with pytest.raises(ToolError, match=r"tool 'js\.fail' failed: RangeError: nothing to see"):
        await rt.tool("js.fail")
    listed = {info.name: info for info in await rt.tools(timeout=2.0, mcp=False)}
    double = listed["js.double"]
    assert (double.provider, double.description) == (
        "agent:js-peer",
        "Twice a number, computed in Node.",
    )
    assert double.input_schema["required"] == ["x"]
    assert double.output_schema == {"type": "number"}


async def test_node_calls_python_tools_and_lists_them(peers) -> None:
    _, js = peers
    assert await js.ask(do="tool", name="py.add", args={"a": 1, "b": 2}) == {
        "ok": True,
        "result": 3,
    }
    missing = await js.ask(do="tool", name="py.add", args={"a": 1})
    assert missing == {
        "ok": False,
        "error": "ToolError",
        "message": "tool 'py.add': argument 'b' is missing",
    }
    names = (await js.ask(do="tools", timeout=2000))["names"]
    assert {"py.add", "js.double", "js.fail"} <= set(names)


async def test_a_node_handler_error_reaches_a_python_requester(rt: Runtime, peers) -> None:
    errors = await rt.subscribe("loom.agent.js-peer.error")
    with pytest.raises(RemoteError, match=r"js-peer failed handling 'loom\.tool\.js\.fail'"):
        await rt.request("loom.tool.js.fail", {}, timeout=WAIT)
    report = (await errors.get(timeout=WAIT)).data
    assert (report["agent"], report["error"], report["message"]) == (
        "js-peer",
        "RangeError",
        "nothing to see",
    )
    assert "peer.mjs" in report["traceback"]


async def test_one_trace_crosses_both_languages(rt: Runtime, peers) -> None:
    py, _ = peers
    await rt.emit("trace.start", {"go": 1})
    await asyncio.wait_for(py.arrived.wait(), WAIT)
    store = rt.span_store
    spans: dict[str, Any] = {}
    chain = [
        "publish trace.start",
        "handle trace.start",
        "publish py.to.js.trace",
        "handle py.to.js.trace",
        "publish js.saw.trace",
        "handle js.saw.trace",
    ]

    def complete() -> bool:
        for summary in store.traces(limit=50):
            if summary.root == "publish trace.start":
                spans.update({span.name: span for span in store.trace(summary.trace_id)})
        return all(name in spans for name in chain)  # Node sends its spans every 0.5 s

    await wait_until(complete, timeout=WAIT * 2)
    assert len({spans[name].trace_id for name in chain}) == 1
    for parent, child in itertools.pairwise(chain):
        assert spans[child].parent_id == spans[parent].span_id, (parent, child)
    node_side = {spans["handle py.to.js.trace"].service, spans["publish js.saw.trace"].service}
    assert node_side == {"loom:peer"}
    assert spans["handle py.to.js.trace"].agent == "js-peer"
    assert spans["handle py.to.js.trace"].kind == "consumer"
    assert spans["handle py.to.js.trace"].attributes["loom.handler"] == "on py.to.js.*"


async def test_the_node_agent_beats_like_any_agent(rt: Runtime, peers) -> None:
    _, js = peers
    beats = await rt.subscribe("loom.agent.js-peer.heartbeat")
    beat = (await beats.get(timeout=WAIT)).data
    assert (beat["agent_id"], beat["status"], beat["process"]) == (
        "js-peer",
        "running",
        js.client_id,
    )
    assert beat["patterns"] == ["py.to.js.*", "js.echo", "loom.tool.js.double", "loom.tool.js.fail"]
    assert beat["module"].endswith("peer.mjs")
    assert beat["pid"] == js.proc.pid


# -- a CURVE bus ------------------------------------------------------------------------


async def test_on_a_curve_bus_node_proves_its_own_identity(project: Path) -> None:
    async with open_runtime(secured_project(project, "", ["node"])) as rt:
        await rt.start(PyPeer())
        record = read_discovery(project)
        assert record is not None
        node_dir = joining_toml(project, record.address.publish, "node").parent
        async with node_peer(node_dir) as js:
            beats = await rt.subscribe("loom.agent.js-peer.heartbeat")
            reply = await rt.request("js.echo", {"x": 1}, timeout=WAIT)
            assert reply.data == {"echo": {"x": 1}, "from": "js"}
            assert await js.ask(do="tool", name="py.add", args={"a": 1, "b": 2}) == {
                "ok": True,
                "result": 3,
            }
            assert (await beats.get(timeout=WAIT)).data["identity"] == "node"
        assert rt.broker.statistics().denied == 0


async def test_a_node_process_the_broker_does_not_admit_is_told_why(project: Path) -> None:
    toml = secured_project(project, 'allow = ["loom"]\n', ["stranger"])
    async with open_runtime(toml):
        record = read_discovery(project)
        assert record is not None
        node_dir = joining_toml(project, record.address.publish, "stranger").parent
        proc = await asyncio.create_subprocess_exec(
            NODE, str(PEER), cwd=node_dir, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, stderr = await asyncio.wait_for(proc.communicate(), WAIT * 3)
    assert proc.returncode != 0
    assert "check that the broker admits identity 'stranger'" in stderr.decode()
