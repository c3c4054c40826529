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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import zmq

from .actions import ActionBroker
from .agent import Agent
from .bus import Broker, BusAddress
from .client import BusClient, Subscription
from .config import LoomConfig, load_config
from .context import Context
from .discovery import discovery_lock, read_discovery, remove_discovery, write_discovery
from .envelope import Envelope
from .errors import BusError, LoomError
from .llm import LLMProvider
from .memory import Memory, MemoryStore
from .runner import AgentRunner, AgentStatistics, Middleware
from .span_store import SpanCollector, SpanStore
from .tools import ToolInfo
from .tracing import Tracing

__all__ = ["Runtime", "RuntimeStatistics", "open_runtime", "run"]

log = logging.getLogger("loom.runtime")
_DISCOVERY_TIMEOUT = 1.0


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
    """Agents of one process on one bus. Create it with :func:`open_runtime`."""

    def __init__(self, config: LoomConfig, bus: str | None = None):
        self.config = config
        self._bus_url = bus
        self.broker: Broker | None = None
        self.client: BusClient = None  # type: ignore[assignment]  # set by _open()
        self.address: BusAddress | None = None
        self.middleware: list[Middleware] = []
        self.actions = ActionBroker(self)
        self.tracing = Tracing(self)
        if self.tracing.enabled:
            self.middleware.append(self.tracing.middleware)
        self._memory_store: MemoryStore | None = None
        self._memory: Memory | None = None
        self._collector: SpanCollector | None = None
        self._span_store: SpanStore | None = None
        self._collect_spans = False
        self._runners: dict[str, AgentRunner] = {}
        self._context: Context | None = None
        self._beat: asyncio.Task[None] | None = None
        self._closed = False

    # -- opening and closing ---------------------------------------------------------

    @property
    def embedded(self) -> bool:
        """True when this runtime runs the bus's broker itself."""
        return self.broker is not None

    async def _open(self) -> Runtime:
        settings = self.config.bus
        hwm = settings.hwm
        if self._bus_url is not None:
            await self._join(BusAddress.parse(self._bus_url), settings.connect_timeout)
        elif settings.mode == "connect":
            if settings.url is None:
                record = read_discovery(self.config.project_dir)
                if record is None:
                    raise BusError(
                        f'[bus] mode = "connect" but no bus runs for {self.config.project_dir} '
                        "and [bus] url is unset: start one with `loom bus`"
                    )
                address = record.address
            else:
                address = BusAddress.parse(settings.url)
            await self._join(address, settings.connect_timeout)
        else:
            async with discovery_lock(self.config.project_dir):
                joined = False
                if settings.mode == "auto":
                    joined = await self._try_join_running()
                if not joined:
                    await self._embed(hwm)
        self._context = Context(self, self.client.client_id)
        await self.tracing.start(self._context)
        if self._collect_spans:
            await self.start_span_collector()
        await self.actions.start(self._context)
        self._beat = asyncio.get_running_loop().create_task(
            self._heartbeat(), name="loom:heartbeat"
        )
        return self

    async def _try_join_running(self) -> bool:
        settings = self.config.bus
        if settings.url is not None:
            candidate = BusAddress.parse(settings.url)
        else:
            record = read_discovery(self.config.project_dir)
            if record is None:
                return False
            candidate = record.address
        try:
            await self._join(candidate, _DISCOVERY_TIMEOUT)
        except BusError:
            log.info("no bus answered at %s; starting an embedded one", candidate.publish)
            return False
        return True

    async def _join(self, address: BusAddress, timeout: float) -> None:
        client = BusClient(address, name="rt", hwm=self.config.bus.hwm)
        await client.connect(timeout)
        self.client, self.address = client, address

    async def _embed(self, hwm: int) -> None:
        context = zmq.Context.instance()
        tcp = BusAddress.parse(self.config.bus.url or "tcp://127.0.0.1:0")
        local = BusAddress.parse(f"inproc://loom-bus-{os.getpid()}-{id(self):x}")
        broker = Broker([local, tcp], context=context, hwm=hwm)
        local_bound, tcp_bound = broker.start()
        self.broker = broker
        try:
            client = BusClient(local_bound, name="rt", context=context, hwm=hwm)
            await client.connect(self.config.bus.connect_timeout)
        except BaseException:
            broker.close()
            self.broker = None
            raise
        self.client, self.address = client, tcp_bound
        write_discovery(self.config.project_dir, tcp_bound, "embedded")
        self._collect_spans = True
        log.info(
            "embedded bus at %s (publish) / %s (subscribe)", tcp_bound.publish, tcp_bound.subscribe
        )

    async def aclose(self) -> None:
        """Stop every agent (last started first), then leave or stop the bus. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        for runner in reversed(list(self._runners.values())):
            await runner.stop()
            self._publish_heartbeat(runner)
        await self.actions.aclose()
        await self.tracing.aclose(self._context)
        if self._collector is not None:
            # the last batch is on its way through this process's own broker
            await self._collector.drain(self.client.client_id, self.tracing.exported)
            await self._collector.aclose()
        if self._span_store is not None:
            self._span_store.close()
        if self._memory_store is not None:
            await self._memory_store.aclose()
        if self._context is not None:
            await self._context._close_subscriptions()
        if self.client is not None:
            await self.client.aclose()
        if self.broker is not None:
            remove_discovery(self.config.project_dir)
            self.broker.close()

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
            self.actions.check_new_tools(agent)
            runner = AgentRunner(self, agent)
            self._runners[agent.id] = runner
            await runner.start()
            self._publish_heartbeat(runner)
            if runner.tools:
                self.actions.announce(self.context)

    async def stop(self, agent: Agent | str) -> None:
        """Stop one agent (by instance or id); its ``on_stop`` runs first."""
        agent_id = agent if isinstance(agent, str) else agent.id
        runner = self._runners.get(agent_id)
        if runner is None:
            known = ", ".join(self._runners) or "none"
            raise LoomError(f"no agent {agent_id!r} in this runtime (running: {known})")
        await runner.stop()
        self._publish_heartbeat(runner)
        if runner.tools:
            self.actions.announce(self.context)

    @property
    def agents(self) -> dict[str, AgentRunner]:
        """The runners of every agent started here, by id."""
        return dict(self._runners)

    def status(self, agent_id: str) -> str:
        return self._runners[agent_id].status

    # -- talking to the bus from outside an agent (notebooks, tests, scripts) --------

    @property
    def context(self) -> Context:
        """A context for code that is not an agent (source ``runtime-<pid>``)."""
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
        return await self.actions.tools(self.context, timeout=timeout, mcp=mcp)

    async def subscribe(
        self, pattern: str, *, qos: str = "reliable", **options: Any
    ) -> Subscription:
        """Subscribe from outside any agent; the subscription is live when this returns."""
        return await self.context.subscribe(pattern, qos=qos, **options)

    async def start_span_collector(self) -> SpanCollector | None:
        """Store the spans published on this bus in ``[tracing] store_path`` (done by the
        process that runs the bus, when ``[tracing] collect`` is on)."""
        settings = self.config.tracing
        if self._collector is not None or not (settings.enabled and settings.collect):
            return self._collector
        store = SpanStore(
            self.config.project_path(settings.store_path),
            retention_hours=settings.retention_hours,
            max_spans=settings.store_max_spans,
        )
        self._collector = SpanCollector(store)
        await self._collector.start(self.context)
        return self._collector

    @property
    def span_store(self) -> SpanStore:
        """The project's span store (``[tracing] store_path``), for queries."""
        if self._span_store is None:
            settings = self.config.tracing
            self._span_store = SpanStore(
                self.config.project_path(settings.store_path),
                retention_hours=settings.retention_hours,
                max_spans=settings.store_max_spans,
            )
        return self._span_store

    @property
    def memory_store(self) -> MemoryStore:
        """The project's long-term memory (``[memory] path``), opened on first use."""
        if self._memory_store is None:
            path = self.config.project_path(self.config.memory.path)
            self._memory_store = MemoryStore(path)
        return self._memory_store

    def llm(self, name: str) -> LLMProvider:
        """An LLM provider from ``loom.toml``, for code outside agents; see :meth:`Context.llm`."""
        return self.context.llm(name)

    @property
    def memory(self) -> Memory:
        """Memory of code outside agents, under the agent id ``"runtime"`` (stable across
        restarts, unlike the runtime's client id)."""
        if self._memory is None:
            settings = self.config.memory
            self._memory = Memory(
                self.memory_store,
                "runtime",
                short_term_size=settings.short_term_size,
                default_ttl=settings.default_ttl_sec,
            )
        return self._memory

    # -- statistics and heartbeats ---------------------------------------------------

    def statistics(self) -> RuntimeStatistics:
        return RuntimeStatistics(
            client=self.client.statistics().to_dict(),
            agents=[runner.statistics() for runner in self._runners.values()],
            broker=self.broker.statistics().to_dict() if self.broker else None,
        )

    async def _heartbeat(self) -> None:
        interval = self.config.runtime.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            try:
                for runner in self._runners.values():
                    if runner.active:
                        self._publish_heartbeat(runner)
                client = self.client.statistics()
                self.context._publish(
                    f"loom.client.{client.client_id}.stats",
                    client.to_dict(),
                    type="stats",
                    count=False,
                )
                if self.broker is not None:
                    self.context._publish(
                        "loom.broker.stats",
                        self.broker.statistics().to_dict(),
                        type="stats",
                        count=False,
                    )
            except LoomError as exc:
                log.warning("heartbeat skipped: %s", exc)

    def _publish_heartbeat(self, runner: AgentRunner) -> None:
        stats = runner.statistics().to_dict()
        with contextlib.suppress(LoomError):
            runner.ctx._publish(
                f"loom.agent.{runner.agent.id}.heartbeat", stats, type="heartbeat", count=False
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
    config: str | os.PathLike[str] | LoomConfig | None = None, *, bus: str | None = None
) -> _RuntimeOpener:
    """Open a runtime: join the project's bus, or embed one.

    Args:
        config: a ``loom.toml`` path, a :class:`LoomConfig`, or None to look for
            ``loom.toml`` from the working directory upward (defaults if none).
        bus: a bus URL to join (``tcp://host:port``, ``ipc://path``); overrides discovery.

    Use ``async with open_runtime() as rt:`` in scripts, ``rt = await open_runtime()``
    in notebooks (then ``await rt.aclose()``).

    Raises:
        ConfigError: bad ``loom.toml``.
        BusError: the named bus does not answer, or the embedded one cannot bind.
    """
    settings = config if isinstance(config, LoomConfig) else load_config(config)
    return _RuntimeOpener(Runtime(settings, bus))


def run(
    *agents: Agent,
    config: str | os.PathLike[str] | LoomConfig | None = None,
    bus: str | None = None,
) -> None:
    """Run agents in a plain process until Ctrl-C or SIGTERM, then stop them cleanly."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with open_runtime(config, bus=bus) as rt:
            await rt.start(*agents)
            await stop.wait()

    asyncio.run(main())
