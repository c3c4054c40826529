"""Supervision of one agent: its subscriptions, consumer tasks, errors and status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..bus.transport import Subscription
from ..capabilities.tools import ToolInfo, ToolSignature
from ..config import RuntimeConfig
from ..errors import HandlerTimeout, LoomError, ToolError
from ..messaging.endpoint import current_event
from ..protocol import reserved
from ..protocol.envelope import Envelope
from ..protocol.handlers import Handler, HandlerSpec, Middleware
from ..stats import LatencyRecorder
from .agent import Agent, overrides
from .context import Context

__all__ = ["STATUSES", "AgentRunner", "AgentStatistics", "ReplaceReport", "Route"]

log = logging.getLogger("loom.runtime")
STATUSES = ("starting", "running", "idle", "stalled", "stopped", "failed")


@dataclass(frozen=True)
class AgentStatistics:
    """What an agent has done, as its heartbeat reports it."""

    agent_id: str
    status: str
    handled: int
    errors: int
    emitted: int
    queue_depth: int
    dropped: int
    lost: int
    latency_p50_ms: float
    latency_p99_ms: float
    handler_p50_ms: float
    handler_p99_ms: float
    last_error: str | None
    uptime_s: float
    process: str = ""  # the bus client id of the agent's process
    pid: int = 0
    observer: bool = False  # an observer agent (``traced = False``): it watches the system
    stalls: int = 0  # times the agent's event loop did not turn for ``stall_after``
    longest_stall_ms: float = 0.0
    timeouts: int = 0  # handler calls cancelled past their timeout

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(eq=False)
class Route:
    """One subscription of an agent and the handler consuming it (the handler is swapped
    in place when the agent's code is reloaded; the subscription and its queue stay)."""

    key: tuple[str, str, str]  # pattern, QoS, method: what a new version must match
    spec: HandlerSpec
    sub: Subscription
    handler: Handler
    what: str
    task: asyncio.Task[None] | None = None
    retired: bool = False


@dataclass(frozen=True)
class ReplaceReport:
    """What a hot swap did to an agent's subscriptions."""

    kept: list[str]
    added: list[str]
    removed: list[str]
    dropped: int  # events queued for removed handlers, which the new version has no use for


class AgentRunner:
    """Runs one :class:`Agent`: subscribes its handlers and tools, consumes their
    mailboxes through the middleware chain, records errors and derives its status; swaps
    in a new version of the agent's code without losing its subscriptions (:meth:`replace`).

    Args:
        agent: the agent.
        ctx: its context (its endpoint subscribes and publishes for it).
        middleware: wraps every handler, outermost first (tracing, metrics...).
        settings: ``[runtime]`` (mailbox bound, idle and stall thresholds, handler
            timeout).
    """

    def __init__(
        self,
        agent: Agent,
        ctx: Context,
        *,
        middleware: Sequence[Middleware] = (),
        settings: RuntimeConfig | None = None,
    ):
        self.agent = agent
        self.ctx = ctx
        self.middleware = list(middleware)
        self.settings = settings or RuntimeConfig()
        self.version = 1
        self._routes: list[Route] = []
        self._run_task: asyncio.Task[None] | None = None
        self._active: dict[int, tuple[float, str]] = {}  # route → (started, what)
        self._state = "starting"
        self._started = time.monotonic()
        self._last_activity = 0.0
        self.tools: list[ToolInfo] = []
        self.handled = 0
        self.errors = 0
        self.last_error: str | None = None
        self.stalls = 0
        self.longest_stall = 0.0
        self.timeouts = 0
        self.latency = LatencyRecorder()
        self.handler_time = LatencyRecorder()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe every handler and tool, then run ``on_start`` and ``run``."""
        agent = self.agent
        # Subscribe everything first; consume only after on_start, so no handler runs
        # before the agent has set itself up (events wait in the mailboxes meanwhile).
        try:
            self._routes, self.tools = await self._subscribe_all(agent, {})
            await agent.on_start(self.ctx)
        except Exception as exc:
            self._state = "failed"
            self._record_error("on_start", None, exc)
            await self._teardown()
            raise LoomError(
                f"agent {agent.id!r} failed to start: {type(exc).__name__}: {exc}"
            ) from exc
        for route in self._routes:
            self._consume_in_background(route)
        self._start_run_body()
        self._state = "running"
        self._last_activity = time.monotonic()  # just started counts as activity

    async def _subscribe_all(
        self, agent: Agent, existing: dict[tuple[str, str, str], Route]
    ) -> tuple[list[Route], list[ToolInfo]]:
        """The routes of ``agent``: an existing route of the same key is taken over with
        the new handler; the others are subscribed now (live on return)."""
        routes: list[Route] = []
        tools: list[ToolInfo] = []
        try:
            for spec, handler, what in self._handlers(agent, tools):
                key = (spec.pattern, spec.qos, spec.name)
                wrapped = self._wrap(agent, spec, handler)
                route = existing.get(key)
                if route is None:
                    route = Route(key, spec, await self._subscribe(spec), wrapped, what)
                else:
                    route = Route(key, spec, route.sub, wrapped, what, route.task)
                routes.append(route)
        except BaseException:
            for route in routes:
                if route.key not in existing:
                    await route.sub.aclose()
            raise
        return routes, tools

    def _handlers(
        self, agent: Agent, tools: list[ToolInfo]
    ) -> list[tuple[HandlerSpec, Handler, str]]:
        found: list[tuple[HandlerSpec, Handler, str]] = [
            (spec, agent.handler_for(spec), spec.name) for spec in agent.handlers
        ]
        for tool_spec in agent.tools:
            signature = ToolSignature(tool_spec.name, getattr(agent, tool_spec.method))
            spec = HandlerSpec(reserved.tool_topic(tool_spec.name), "reliable", tool_spec.method)
            found.append((spec, self._tool_handler(signature), f"tool:{tool_spec.name}"))
            tools.append(
                signature.info(
                    tool_spec.description, f"agent:{agent.id}", self.ctx.transport.client_id
                )
            )
        return found

    async def _subscribe(self, spec: HandlerSpec) -> Subscription:
        options = spec.mailbox_options()
        if spec.qos == "realtime" and options["maxsize"] is None:
            options["maxsize"] = self.settings.mailbox_size
        return await self.ctx.transport.subscribe(
            spec.pattern, qos=spec.qos, owner=self.agent.id, **options
        )

    def _consume_in_background(self, route: Route) -> None:
        name = f"loom:{self.agent.id}:{route.what}"
        route.task = asyncio.get_running_loop().create_task(self._consume(route), name=name)

    def _start_run_body(self) -> None:
        if overrides(self.agent, "run"):
            self._run_task = asyncio.get_running_loop().create_task(
                self._run_body(self.agent), name=f"loom:{self.agent.id}:run"
            )

    async def stop(self) -> None:
        """Run ``on_stop``, then cancel the agent's tasks and close its subscriptions."""
        if self._state in ("stopped", "failed") and not self._tasks():
            return
        try:
            await self.agent.on_stop(self.ctx)
        except Exception as exc:
            self._record_error("on_stop", None, exc)
        await self._teardown()
        if self._state != "failed":
            self._state = "stopped"

    def _tasks(self) -> list[asyncio.Task[None]]:
        tasks = [route.task for route in self._routes if route.task is not None]
        return tasks + ([self._run_task] if self._run_task is not None else [])

    async def _teardown(self) -> None:
        tasks = self._tasks()
        self._run_task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        routes, self._routes = self._routes, []
        for route in routes:
            await route.sub.aclose()
        await self.ctx.aclose()

    # -- hot swap --------------------------------------------------------------------

    async def replace(self, agent: Agent) -> ReplaceReport:
        """Swap in a new version of the agent (same id) without stopping it.

        Handlers the new version keeps (same pattern, QoS and method) keep their
        subscription and its queue: a call in flight finishes on the old code, the
        queued events go to the new code. New handlers are subscribed before the swap;
        removed ones stop after their call in flight (what they had queued is dropped
        and counted). ``agent.on_reload(old, ctx)`` runs before the swap: if it raises,
        the old version goes on as if nothing happened. The context (memory, sequence
        numbers, logger) is the same; ``run`` restarts on the new code.

        Raises:
            LoomError: another id, or ``on_reload`` failed (the old version still runs).
        """
        old = self.agent
        if agent.id != old.id:
            raise LoomError(f"a new version of {old.id!r} must keep its id, got {agent.id!r}")
        existing = {route.key: route for route in self._routes}
        routes, tools = await self._subscribe_all(agent, existing)
        added = [route for route in routes if route.key not in existing]
        try:
            await agent.on_reload(old, self.ctx)
        except Exception:
            for route in added:
                await route.sub.aclose()
            raise
        return await self._swap(agent, routes, tools, existing)

    async def _swap(
        self,
        agent: Agent,
        routes: list[Route],
        tools: list[ToolInfo],
        existing: dict[tuple[str, str, str], Route],
    ) -> ReplaceReport:
        kept_keys = {route.key for route in routes}
        # no await from here to the end of the swap: no event is handled half-way
        self.agent, self.tools, self.version = agent, tools, self.version + 1
        for route in routes:
            if route.key in existing:
                existing[route.key].handler = route.handler
                existing[route.key].spec = route.spec
        removed = [route for key, route in existing.items() if key not in kept_keys]
        for route in removed:
            route.retired = True
        self._routes = [existing.get(route.key, route) for route in routes]
        for route in self._routes:
            if route.task is None:
                self._consume_in_background(route)
        run, self._run_task = self._run_task, None
        if run is not None:
            run.cancel()
        self._start_run_body()
        dropped = 0
        for route in removed:
            dropped += len(route.sub.mailbox)
            await route.sub.aclose()
        return ReplaceReport(
            kept=[route.what for route in self._routes if route.key in existing],
            added=[route.what for route in self._routes if route.key not in existing],
            removed=[route.what for route in removed],
            dropped=dropped,
        )

    # -- handling --------------------------------------------------------------------

    def _wrap(self, agent: Agent, spec: HandlerSpec, handler: Handler) -> Handler:
        bound = spec.bind(agent.id, traced=agent.traced)
        for middleware in reversed(self.middleware):
            handler = middleware(bound, handler)
        return handler

    async def _consume(self, route: Route) -> None:
        # Once per event: names bound to locals, and a handler without a timeout awaited
        # here rather than through _call (one coroutine less per event).
        key, what, active, ctx = id(route), route.what, self._active, self.ctx
        latency, handler_time = self.latency, self.handler_time
        monotonic, time_ns = time.monotonic, time.time_ns
        async for item in route.sub:
            if route.retired:  # its handler is gone from the new version
                return
            batch = type(item) is list
            first: Envelope = item[0] if batch else item
            started = monotonic()
            active[key] = (started, what)
            if first.ts:  # a foreign publisher may leave it out
                latency.record((time_ns() - first.ts) / 1e9)
            token = current_event.set(first)
            try:
                timeout = route.spec.timeout or self.settings.handler_timeout
                if timeout is None:
                    await route.handler(item, ctx)
                else:
                    await self._call(route, item, first, timeout)
            except Exception as exc:
                self._record_error(route.spec.name, first, exc)
                await self._answer_failure(first, exc)
            finally:
                current_event.reset(token)
                del active[key]
                ended = monotonic()
                handler_time.record(ended - started)
                self._last_activity = ended
                self.handled += len(item) if batch else 1

    async def _call(self, route: Route, item: Any, first: Envelope, timeout: float) -> None:
        """One handler call, cancelled past ``timeout`` seconds (``HandlerTimeout``)."""
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                await route.handler(item, self.ctx)
        except TimeoutError:
            if not scope.expired():
                raise  # the handler's own timeout error
            self.timeouts += 1
            raise HandlerTimeout(
                f"{route.what} of agent {self.agent.id!r} ran over its {timeout:g} s timeout on "
                f"{first.topic!r} and was cancelled: make it faster, or raise "
                "@on_event(..., timeout=) / [runtime] handler_timeout"
            ) from None

    def note_stall(self, seconds: float) -> None:
        """The agent's event loop did not turn for ``seconds`` (the runtime's watchdog)."""
        self.stalls += 1
        self.longest_stall = max(self.longest_stall, seconds)

    def active_handlers(self) -> list[tuple[float, str]]:
        """``(started, handler)`` of the calls running now, oldest first (readable from
        another thread: a copy)."""
        return sorted(self._active.copy().values())

    def _tool_handler(self, signature: ToolSignature) -> Handler:
        async def serve(event: Envelope, ctx: Context) -> None:
            try:
                arguments = signature.bind(event.data)
            except ToolError as exc:  # the caller's mistake: answered, not the agent's error
                await ctx.reply(event, {"error": "ToolError", "message": str(exc)}, type="error")
                return
            await ctx.reply(event, await signature.method(**arguments))

        return serve

    async def _run_body(self, agent: Agent) -> None:
        try:
            await agent.run(self.ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._state = "failed"
            self._record_error("run", None, exc)

    def _record_error(self, where: str, event: Envelope | None, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = f"{type(exc).__name__}: {exc}"
        topic = event.topic if event is not None else None
        self.ctx.log.error(
            "%s failed%s: %s", where, f" on {topic!r}" if topic else "", self.last_error
        )
        report = {
            "agent": self.agent.id,
            "where": where,
            "topic": topic,
            "event_id": event.id if event is not None else None,
            "error": type(exc).__name__,
            "message": str(exc),
            "traceback": "".join(traceback.format_exception(exc)),
        }
        with contextlib.suppress(LoomError):
            self.ctx.endpoint.report(reserved.agent_error(self.agent.id), report, type="error")

    async def _answer_failure(self, event: Envelope, exc: BaseException) -> None:
        """A failed request still gets an answer, so its caller does not wait for a timeout."""
        if event.type in ("request", "award") and event.reply_to:
            info = {"error": type(exc).__name__, "message": str(exc)}
            with contextlib.suppress(LoomError), self.ctx.endpoint.tracer.continuing(event):
                await self.ctx.reply(event, info, type="error")

    # -- status ----------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """True until the agent is stopped (a failed agent stays active until stopped)."""
        return bool(self._tasks()) or self._state == "running"

    @property
    def status(self) -> str:
        """``running``, ``idle``, ``stalled``, ``stopped`` or ``failed``, from what it does."""
        if self._state != "running":
            return self._state
        now = time.monotonic()
        settings = self.settings
        if self._active and now - min(self._active.values())[0] > settings.stall_after:
            return "stalled"
        waiting = any(len(route.sub.mailbox) for route in self._routes)
        last = max(self._last_activity, self.ctx.last_emit)
        if waiting and not self._active and now - last > settings.stall_after:
            return "stalled"
        if self._active or waiting or now - last < settings.idle_after:
            return "running"
        return "idle"

    def statistics(self) -> AgentStatistics:
        stats = [route.sub.statistics() for route in self._routes]
        lat50, lat99 = self.latency.percentiles_ms(50, 99)
        run50, run99 = self.handler_time.percentiles_ms(50, 99)
        return AgentStatistics(
            agent_id=self.agent.id,
            status=self.status,
            handled=self.handled,
            errors=self.errors,
            emitted=self.ctx.emitted,
            queue_depth=sum(s.depth for s in stats),
            dropped=sum(s.dropped for s in stats),
            lost=sum(s.lost for s in stats),
            latency_p50_ms=lat50,
            latency_p99_ms=lat99,
            handler_p50_ms=run50,
            handler_p99_ms=run99,
            last_error=self.last_error,
            uptime_s=round(time.monotonic() - self._started, 3),
            process=self.ctx.transport.client_id,
            pid=os.getpid(),
            observer=not self.agent.traced,
            stalls=self.stalls,
            longest_stall_ms=round(self.longest_stall * 1000, 1),
            timeouts=self.timeouts,
        )
