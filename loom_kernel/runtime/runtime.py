"""The runtime: one bus connection per process, the agents on it, their heartbeats.

>>> async with open_runtime() as rt:            # doctest: +SKIP
...     await rt.start(MyAgent("my-agent"))
...     reply = await rt.request("demo.ping", {"n": 1})

In a notebook, where the kernel's loop already runs, open it without ``async with``
so the agents keep running between cells::

    rt = await open_runtime()
    await rt.start(MyAgent("my-agent"))
    ...
    await rt.aclose()

The runtime is the composition root: the only place that builds the layers and wires
them together (the transport, the tracer and its middleware, the action broker, the
capabilities, each agent's endpoint, context and runner). Every other component is
given the collaborators it uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any

from ..agents.agent import Agent
from ..agents.context import Context
from ..agents.runner import AgentRunner, AgentStatistics
from ..bus.connect import Address, Client, Connection, connect_bus, uses_nats
from ..bus.transport import Subscription, Transport
from ..bus.zeromq.broker import Broker
from ..capabilities.actions import ActionBroker
from ..capabilities.llm import LLMProvider
from ..capabilities.memory import Memory, MemoryStore
from ..capabilities.toolkit import Capabilities
from ..capabilities.tools import ToolInfo
from ..config import LoomConfig, load_config
from ..durability.service import EventLogService
from ..durability.store import EventLog
from ..errors import LoomError, ReloadError, TopicError
from ..messaging.endpoint import Endpoint
from ..protocol import reserved
from ..protocol.envelope import Envelope
from ..protocol.handlers import Middleware
from ..protocol.spans import Span
from ..protocol.topics import validate_topic
from ..security.guard import Access
from ..tracing.collector import SpanCollector
from ..tracing.middleware import tracing_middleware
from ..tracing.recorder import SpanRecorder
from ..tracing.store import SpanStore, open_span_store
from ..tracing.tracer import NO_TRACER, Tracer
from .eventlog import EventLogHost, endpoint_transport
from .heartbeat import Heartbeat, beat
from .refusals import RefusalLog
from .reload import ReloadResult, ReloadService, announce, load_module, new_version, swap
from .watchdog import LoopWatchdog

__all__ = ["Runtime", "RuntimeStatistics", "open_runtime", "run"]


@dataclass(frozen=True)
class RuntimeStatistics:
    """One snapshot of a runtime: its client, its agents, its broker if it runs one."""

    client: dict[str, Any]
    agents: list[AgentStatistics]
    broker: dict[str, int] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.client,
            "agents": [a.to_dict() for a in self.agents],
            "broker": self.broker,
        }


class Runtime:
    """Agents of one process on one bus. Create it with :func:`open_runtime`.

    Attributes:
        config: the project's settings.
        tracing: the tracer (a :class:`SpanRecorder`, or the no-op tracer when
            ``[tracing] enabled = false``).
        middleware: wraps every handler of every agent started here, outermost first;
            append your own before starting agents.
        actions: the action broker (tools and ``[mcp.*]`` servers).
        capabilities: what agents use beyond the bus (tools, LLMs, memory).
    """

    def __init__(self, config: LoomConfig, bus: str | None = None, namespace: str | None = None):
        self.config = config
        self._bus_url = bus
        #: The replay namespace this runtime lives in (None: the real system).
        self.namespace = namespace or config.runtime.namespace
        if self.namespace is not None and "." in validate_topic(self.namespace):
            raise TopicError(f"namespace {self.namespace!r} must be one topic segment")
        self.connection: Connection | None = None
        self._transport: Transport | None = None
        self._event_log = EventLogHost(config)
        recorder = SpanRecorder(config.tracing) if config.tracing.enabled else None
        self.tracing: Tracer = recorder or NO_TRACER
        self.middleware: list[Middleware] = [tracing_middleware(recorder)] if recorder else []
        self.actions = ActionBroker(
            config.mcp,
            config.project_dir,
            local_tools=self._local_tools,
            tracer=self.tracing,
            sandboxed=config.tools,
        )
        self.capabilities = Capabilities(
            config, self.actions, lambda: self.memory_store, tracer=self.tracing
        )
        self._recorder = recorder
        self._memory_store: MemoryStore | None = None
        self._memory: Memory | None = None
        self._collector: SpanCollector | None = None
        self._span_store: SpanStore | None = None
        self._runners: dict[str, AgentRunner] = {}
        self._endpoint: Endpoint | None = None
        self._context: Context | None = None
        self._heartbeat: Heartbeat | None = None
        self._reloads: ReloadService | None = None
        self._refusals: RefusalLog | None = None
        self._watchdog: LoopWatchdog | None = None
        self._closed = False

    # -- the bus -----------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """This process's transport (its connection to the bus)."""
        if self.connection is None:
            raise LoomError("the runtime is not open yet: use `rt = await open_runtime()`")
        return self.connection.client

    @property
    def transport(self) -> Transport:
        """What agents publish and subscribe through: the client, wrapped by the event
        log's durable transport or a replay namespace (``docs/durability.md``)."""
        if self._transport is None:
            raise LoomError("the runtime is not open yet: use `rt = await open_runtime()`")
        return self._transport

    @property
    def broker(self) -> Broker | None:
        """The broker this process runs (embedded bus), else None."""
        return self.connection.broker if self.connection is not None else None

    @property
    def address(self) -> Address | None:
        """The address other processes join this bus at."""
        return self.connection.address if self.connection is not None else None

    @property
    def embedded(self) -> bool:
        """True when this runtime runs the bus's broker itself."""
        return self.broker is not None

    # -- opening and closing ---------------------------------------------------------

    async def _open(self) -> Runtime:
        self.connection = await connect_bus(
            self.config.bus,
            self.config.project_dir,
            url=self._bus_url,
            on_host=self._hosting,
            access=Access(self.config.acl, self.config.tenants),
        )
        client = self.connection.client
        self._transport = await endpoint_transport(client, self.config, self.namespace)
        self._endpoint = self._new_endpoint(client.client_id)
        self._context = Context(self._endpoint, self.capabilities, self.config, host=self)
        if self._recorder is not None:
            await self._recorder.start(self._export_spans)
        if self.connection.embedded:
            await self.start_span_collector()
            await self.start_event_log()
        await self.actions.start(self._endpoint)
        # other processes (the studio's editor) ask this one to reload its agents' code
        self._reloads = ReloadService(self._endpoint, self._runners.values, self.reload_module)
        await self._reloads.start()
        if self.config.bus.security == "curve":
            self._refusals = RefusalLog(self._endpoint, self.config.bus.identity)
            await self._refusals.start()
        self._heartbeat = Heartbeat(
            self.config.runtime.heartbeat_interval,
            self._runners.values,
            self._endpoint,
            lambda: self.broker,
        )
        self._heartbeat.start()
        settings = self.config.runtime
        self._watchdog = LoopWatchdog(
            settings.stall_after, settings.heartbeat_interval, self._runners.values, client
        )
        self._watchdog.start()
        return self

    async def _hosting(self) -> None:
        """This process took the bus over from a dead host: it stores the spans and
        records the event log now."""
        await self.start_span_collector()
        await self.start_event_log()

    async def wait_bus(self, timeout: float | None = 10.0) -> None:
        """Return once the bus answers: at once, or when a failover is done (see
        ``docs/durability.md``).

        Raises:
            BusError: the bus did not come back within ``timeout`` seconds.
        """
        await self.client.wait_bus(timeout)

    def _new_endpoint(self, source: str) -> Endpoint:
        return Endpoint(
            self.transport, source, tracer=self.tracing, max_hops=self.config.runtime.max_hops
        )

    def _export_spans(self, batch: list[Span]) -> None:
        if self._endpoint is not None:
            self._endpoint.report(reserved.spans(self.client.client_id), batch, type="spans")

    async def aclose(self) -> None:
        """Stop every agent (last started first), then leave or stop the bus. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._watchdog is not None:
            self._watchdog.close()
        if self._heartbeat is not None:
            await self._heartbeat.aclose()
        if self._reloads is not None:
            await self._reloads.aclose()
        if self._refusals is not None:
            await self._refusals.aclose()
        for runner in reversed(list(self._runners.values())):
            await runner.stop()
            beat(runner)
        await self.actions.aclose()
        if self._recorder is not None:
            await self._recorder.aclose()
        if self._collector is not None:
            # the last batch is on its way through this process's own broker
            exported = self._recorder.exported if self._recorder is not None else 0
            await self._collector.drain(self.client.client_id, exported)
            await self._collector.aclose()
        if self._span_store is not None:
            self._span_store.close()
        if self._memory_store is not None:
            await self._memory_store.aclose()
        if self._context is not None:
            await self._context.aclose()
        wrapped = self.connection is not None and self._transport is not self.connection.client
        if self._transport is not None and wrapped:
            await self._transport.aclose()  # acks awaited, cursors' last commits written
        await self._event_log.aclose()
        if self.connection is not None:
            await self.connection.aclose()

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- agents ----------------------------------------------------------------------

    async def start(self, *agents: Agent) -> None:
        """Start agents; returns once their subscriptions are live and ``on_start`` ran.

        Raises:
            LoomError: an agent with that id already runs here, or its ``on_start`` raised.
        """
        self._check_open()
        for agent in agents:
            if not isinstance(agent, Agent):
                raise TypeError(f"start() takes Agent instances, got {agent!r}")
            existing = self._runners.get(agent.id)
            if existing is not None and existing.status not in ("stopped", "failed"):
                raise LoomError(
                    f"an agent with id {agent.id!r} is already running: give each agent its own id"
                )
            if existing is not None:
                await existing.stop()  # a failed one may still hold subscriptions
            self._check_tool_names(agent)
            ctx = Context(self._new_endpoint(agent.id), self.capabilities, self.config, host=self)
            runner = AgentRunner(
                agent, ctx, middleware=self.middleware, settings=self.config.runtime
            )
            self._runners[agent.id] = runner
            await runner.start()
            beat(runner)
            if runner.tools:
                self.actions.announce(self.context.endpoint)

    async def stop(self, agent: Agent | str) -> None:
        """Stop one agent (by instance or id); its ``on_stop`` runs first."""
        agent_id = agent if isinstance(agent, str) else agent.id
        runner = self._runners.get(agent_id)
        if runner is None:
            known = ", ".join(self._runners) or "none"
            raise LoomError(f"no agent {agent_id!r} in this runtime (running: {known})")
        await runner.stop()
        beat(runner)
        if runner.tools:
            self.actions.announce(self.context.endpoint)

    @property
    def agents(self) -> dict[str, AgentRunner]:
        """The runners of every agent started here, by id."""
        return dict(self._runners)

    def status(self, agent_id: str) -> str:
        """A running agent's status: ``starting``, ``running``, ``idle``, ``stalled``,
        ``stopped`` or ``failed``."""
        return self._runners[agent_id].status

    def _live_runners(self) -> list[AgentRunner]:
        return [r for r in self._runners.values() if r.status not in ("stopped", "failed")]

    def _local_tools(self) -> list[ToolInfo]:
        return [info for runner in self._live_runners() for info in runner.tools]

    def _check_tool_names(self, agent: Agent) -> None:
        """Refuse an agent whose tool name another running agent of this process serves
        (both would answer every call)."""
        served = {
            info.name: runner.agent.id
            for runner in self._live_runners()
            if runner.agent.id != agent.id
            for info in runner.tools
        }
        for spec in agent.tools:
            if spec.name in served:
                raise LoomError(
                    f"agent {agent.id!r} serves tool {spec.name!r}, which agent "
                    f"{served[spec.name]!r} already serves here: give one of them another "
                    f'name, e.g. @tool("{agent.id}.{spec.name}")'
                )

    # -- talking to the bus from outside an agent (notebooks, tests, scripts) --------

    @property
    def context(self) -> Context:
        """A context for code that is not an agent (source: the runtime's client id)."""
        self._check_open()
        if self._context is None:
            raise LoomError("the runtime is not open yet: use `rt = await open_runtime()`")
        return self._context

    async def emit(self, topic: str, data: Any = None, **options: Any) -> Envelope:
        """Publish from outside any agent; see :meth:`Context.emit`."""
        return await self.context.emit(topic, data, **options)

    async def request(self, topic: str, data: Any = None, *, timeout: float = 5.0) -> Envelope:
        """Request from outside any agent; see :meth:`Context.request`."""
        return await self.context.request(topic, data, timeout=timeout)

    async def tool(
        self, name: str, args: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Call a tool from outside any agent; see :meth:`Context.tool`."""
        return await self.context.tool(name, args, timeout=timeout)

    async def tools(self, *, timeout: float = 0.5, mcp: bool = True) -> list[ToolInfo]:
        """Everything callable with ``tool()``: agents' tools in every process on the bus
        (which answer within ``timeout``), then the tools of the ``[mcp.*]`` servers
        (started to list them; ``mcp=False`` leaves them out), each with its schemas."""
        return await self.actions.tools(self.context.endpoint, timeout=timeout, mcp=mcp)

    async def subscribe(
        self, pattern: str, *, qos: str = "reliable", **options: Any
    ) -> Subscription:
        """Subscribe from outside any agent; the subscription is live when this returns."""
        return await self.context.subscribe(pattern, qos=qos, **options)

    def llm(self, name: str) -> LLMProvider:
        """An LLM provider from ``loom.toml``, for code outside agents; see :meth:`Context.llm`."""
        return self.context.llm(name)

    # -- stores ----------------------------------------------------------------------

    async def start_span_collector(self) -> SpanCollector | None:
        """Store the spans published on this bus in ``[tracing] store_path`` (done by the
        process that runs the bus, when ``[tracing] collect`` is on)."""
        settings = self.config.tracing
        if self._collector is not None or not (settings.enabled and settings.collect):
            return self._collector
        collector = SpanCollector(open_span_store(self.config))
        await collector.start(self.client)
        self._collector = collector  # once it listens
        return collector

    @property
    def span_collector(self) -> SpanCollector | None:
        """The collector storing the bus's spans here, once it listens (see docs/scaling.md)."""
        return self._collector

    async def start_event_log(self) -> EventLogService | None:
        """Record the events on this bus in ``[eventlog] path`` and answer durable subscriptions
        and reliable publishers (done by the process that runs the bus, when ``[eventlog]
        enabled`` and ``embedded`` are on; on NATS, JetStream's stream is the log)."""
        if uses_nats(self.config.bus, self._bus_url):
            return None
        return await self._event_log.start(self.client)

    @property
    def event_log(self) -> EventLog:
        """The project's event log file (``[eventlog] path``), for queries:
        ``rt.event_log.query(since, until, topics)``."""
        return self._event_log.log

    async def wait_acknowledged(self, timeout: float | None = 10.0) -> None:
        """Return once the event log has acknowledged every event this process published
        on a reliable topic (``[eventlog] reliable``).

        Raises:
            LoomTimeoutError: some are still waiting after ``timeout`` seconds.
        """
        transport = self.transport
        wait = getattr(transport, "wait_acknowledged", None)
        if wait is not None:
            await wait(timeout)

    @property
    def span_store(self) -> SpanStore:
        """The project's span store (``[tracing] store_path``), for queries."""
        if self._span_store is None:
            self._span_store = open_span_store(self.config)
        return self._span_store

    @property
    def memory_store(self) -> MemoryStore:
        """The project's long-term memory (``[memory] path``), opened on first use."""
        if self._memory_store is None:
            settings = self.config.memory
            self._memory_store = MemoryStore(
                self.config.project_path(settings.path),
                max_items=settings.max_items,
                max_mb=settings.max_mb,
            )
        return self._memory_store

    @property
    def memory(self) -> Memory:
        """Memory of code outside agents, under the agent id ``"runtime"`` (stable across
        restarts, unlike the runtime's client id)."""
        if self._memory is None:
            self._memory = self.capabilities.memory("runtime")
        return self._memory

    # -- new code for running agents --------------------------------------------------

    async def reload(self, agent_id: str, cls: type[Agent] | None = None) -> ReloadResult:
        """Swap new code into a running agent, keeping its subscriptions, queue, memory,
        sequence numbers and ``state`` (see :mod:`loom_kernel.runtime.reload`).

        Args:
            agent_id: the running agent.
            cls: the new class (e.g. redefined in a notebook cell); default: the agent's
                module re-imported, and its class of the same name.

        Raises:
            ReloadError: the new code cannot load or start; the old version still runs.
        """
        runner = self._runner(agent_id)
        try:
            module = (
                None if cls is not None else load_module(type(runner.agent).__module__, agent_id)
            )
            return await swap(runner, new_version(runner.agent, cls, module))
        except ReloadError as exc:
            announce(runner, {"ok": False, "agent": agent_id, "error": str(exc),
                              "file": exc.file, "line": exc.line})  # fmt: skip
            raise

    async def reload_module(self, module: str) -> list[ReloadResult]:
        """Re-import ``module`` once and swap it into every running agent whose class it
        defines (what ``loom run --reload`` does when a file changes).

        Raises:
            ReloadError: the module cannot load; every agent keeps its old version.
        """
        runners = [r for r in self._live_runners() if type(r.agent).__module__ == module]
        if not runners:
            return []
        try:
            fresh = load_module(module, runners[0].agent.id)
        except ReloadError as exc:
            for runner in runners:
                announce(runner, {"ok": False, "agent": runner.agent.id, "error": str(exc),
                                  "file": exc.file, "line": exc.line})  # fmt: skip
            raise
        results = []
        for runner in runners:
            results.append(await swap(runner, new_version(runner.agent, None, fresh)))
        return results

    def _runner(self, agent_id: str) -> AgentRunner:
        runner = self._runners.get(agent_id)
        if runner is None or runner.status in ("stopped", "failed"):
            known = ", ".join(r.agent.id for r in self._live_runners()) or "none"
            raise LoomError(f"no running agent {agent_id!r} here (running: {known})")
        return runner

    # -- statistics ------------------------------------------------------------------

    def statistics(self) -> RuntimeStatistics:
        """The client's, every agent's and (if this process hosts it) the broker's statistics."""
        broker = self.broker
        return RuntimeStatistics(
            client=self.client.statistics().to_dict(),
            agents=[runner.statistics() for runner in self._runners.values()],
            broker=broker.statistics().to_dict() if broker else None,
        )

    def _check_open(self) -> None:
        if self._closed:
            raise LoomError("this runtime is closed: open a new one with open_runtime()")


class _RuntimeOpener:
    """What :func:`open_runtime` returns: ``await`` it, or use it with ``async with``."""

    def __init__(self, runtime: Runtime):
        self._runtime = runtime

    def __await__(self) -> Generator[Any, None, Runtime]:
        return self._runtime._open().__await__()

    async def __aenter__(self) -> Runtime:
        return await self._runtime._open()

    async def __aexit__(self, *exc: object) -> None:
        await self._runtime.aclose()


def open_runtime(
    config: str | os.PathLike[str] | LoomConfig | None = None,
    *,
    bus: str | None = None,
    namespace: str | None = None,
) -> _RuntimeOpener:
    """Open a runtime: join the project's bus, or embed one.

    Args:
        config: a ``loom.toml`` path, a :class:`LoomConfig`, or None to look for
            ``loom.toml`` from the working directory upward (defaults if none).
        bus: a bus URL to join (``tcp://host:port``, ``ipc://path``); overrides discovery.
        namespace: live in a replay namespace: every topic under ``replay.<namespace>.``
            (overrides ``[runtime] namespace``; see ``loom replay --into``).

    Use ``async with open_runtime() as rt:`` in scripts, ``rt = await open_runtime()``
    in notebooks (then ``await rt.aclose()``).

    Raises:
        ConfigError: bad ``loom.toml``.
        BusError: the named bus does not answer, or the embedded one cannot bind.
    """
    settings = config if isinstance(config, LoomConfig) else load_config(config)
    return _RuntimeOpener(Runtime(settings, bus, namespace))


def run(
    *agents: Agent,
    config: str | os.PathLike[str] | LoomConfig | None = None,
    bus: str | None = None,
    alongside: Callable[[Runtime], Awaitable[None]] | None = None,
) -> None:
    """Run agents in a plain process until Ctrl-C or SIGTERM, then stop them cleanly.

    ``alongside(rt)``, when given, runs beside the agents (e.g. a file watcher) and is
    cancelled when they stop; if it raises, everything stops with its error.
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with open_runtime(config, bus=bus) as rt:
            await rt.start(*agents)
            helper = loop.create_task(alongside(rt)) if alongside is not None else None
            stopping = loop.create_task(stop.wait())
            waiting = {stopping} | ({helper} if helper is not None else set())
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for task in waiting - done:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if helper is not None and helper in done:
                helper.result()  # its error, if it failed

    asyncio.run(main())
