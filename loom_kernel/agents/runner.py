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
from ..errors import LoomError, ToolError
from ..messaging.endpoint import current_event
from ..protocol import reserved
from ..protocol.envelope import Envelope
from ..protocol.handlers import Handler, HandlerSpec, Middleware
from ..stats import LatencyRecorder
from .agent import Agent, overrides
from .context import Context

__all__ = ["STATUSES", "AgentRunner", "AgentStatistics"]

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

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class AgentRunner:
    """Runs one :class:`Agent`: subscribes its handlers and tools, consumes their
    mailboxes through the middleware chain, records errors and derives its status.

    Args:
        agent: the agent.
        ctx: its context (its endpoint subscribes and publishes for it).
        middleware: wraps every handler, outermost first (tracing, metrics...).
        settings: ``[runtime]`` (mailbox bound, idle and stall thresholds).
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
        self._subs: list[Subscription] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._active: dict[int, float] = {}
        self._state = "starting"
        self._started = time.monotonic()
        self._last_activity = 0.0
        self.tools: list[ToolInfo] = []
        self.handled = 0
        self.errors = 0
        self.last_error: str | None = None
        self.latency = LatencyRecorder()
        self.handler_time = LatencyRecorder()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe every handler and tool, then run ``on_start`` and ``run``."""
        agent, ctx = self.agent, self.ctx
        loop = asyncio.get_running_loop()
        # Subscribe everything first; consume only after on_start, so no handler runs
        # before the agent has set itself up (events wait in the mailboxes meanwhile).
        consumers: list[tuple[HandlerSpec, Subscription, Handler, str]] = []
        try:
            for spec in agent.handlers:
                sub = await self._subscribe(spec)
                handler = self._wrap(spec, agent.handler_for(spec))
                consumers.append((spec, sub, handler, spec.name))
            for tool_spec in agent.tools:
                signature = ToolSignature(tool_spec.name, getattr(agent, tool_spec.method))
                spec = HandlerSpec(
                    reserved.tool_topic(tool_spec.name), "reliable", tool_spec.method
                )
                sub = await self._subscribe(spec)
                handler = self._wrap(spec, self._tool_handler(signature))
                consumers.append((spec, sub, handler, f"tool:{tool_spec.name}"))
                self.tools.append(
                    signature.info(
                        tool_spec.description, f"agent:{agent.id}", ctx.transport.client_id
                    )
                )
            await agent.on_start(ctx)
            for spec, sub, handler, what in consumers:
                self._spawn(loop, self._consume(spec, sub, handler), what)
        except Exception as exc:
            self._state = "failed"
            self._record_error("on_start", None, exc)
            await self._teardown()
            raise LoomError(
                f"agent {agent.id!r} failed to start: {type(exc).__name__}: {exc}"
            ) from exc
        if overrides(agent, "run"):
            self._spawn(loop, self._run_body(), "run")
        self._state = "running"
        self._last_activity = time.monotonic()  # just started counts as activity

    async def _subscribe(self, spec: HandlerSpec) -> Subscription:
        options = spec.mailbox_options()
        if spec.qos == "realtime" and options["maxsize"] is None:
            options["maxsize"] = self.settings.mailbox_size
        sub = await self.ctx.transport.subscribe(
            spec.pattern, qos=spec.qos, owner=self.agent.id, **options
        )
        self._subs.append(sub)
        return sub

    def _spawn(self, loop: asyncio.AbstractEventLoop, coro: Any, what: str) -> None:
        self._tasks.append(loop.create_task(coro, name=f"loom:{self.agent.id}:{what}"))

    async def stop(self) -> None:
        """Run ``on_stop``, then cancel the agent's tasks and close its subscriptions."""
        if self._state in ("stopped", "failed") and not self._tasks:
            return
        try:
            await self.agent.on_stop(self.ctx)
        except Exception as exc:
            self._record_error("on_stop", None, exc)
        await self._teardown()
        if self._state != "failed":
            self._state = "stopped"

    async def _teardown(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for sub in self._subs:
            await sub.aclose()
        self._subs.clear()
        await self.ctx.aclose()

    # -- handling --------------------------------------------------------------------

    def _wrap(self, spec: HandlerSpec, handler: Handler) -> Handler:
        bound = spec.bind(self.agent.id, traced=self.agent.traced)
        for middleware in reversed(self.middleware):
            handler = middleware(bound, handler)
        return handler

    async def _consume(self, spec: HandlerSpec, sub: Subscription, handler: Handler) -> None:
        key = id(sub)
        ctx = self.ctx
        latency, handler_time = self.latency, self.handler_time
        async for item in sub:
            first: Envelope = item[0] if isinstance(item, list) else item
            started = time.monotonic()
            self._active[key] = started
            if first.ts:  # a foreign publisher may leave it out
                latency.record((time.time_ns() - first.ts) / 1e9)
            token = current_event.set(first)
            try:
                await handler(item, ctx)
            except Exception as exc:
                self._record_error(spec.name, first, exc)
                await self._answer_failure(first, exc)
            finally:
                current_event.reset(token)
                del self._active[key]
                ended = time.monotonic()
                handler_time.record(ended - started)
                self._last_activity = ended
                self.handled += len(item) if isinstance(item, list) else 1

    def _tool_handler(self, signature: ToolSignature) -> Handler:
        async def serve(event: Envelope, ctx: Context) -> None:
            try:
                arguments = signature.bind(event.data)
            except ToolError as exc:  # the caller's mistake: answered, not the agent's error
                await ctx.reply(event, {"error": "ToolError", "message": str(exc)}, type="error")
                return
            await ctx.reply(event, await signature.method(**arguments))

        return serve

    async def _run_body(self) -> None:
        try:
            await self.agent.run(self.ctx)
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
        return bool(self._tasks) or self._state == "running"

    @property
    def status(self) -> str:
        """``running``, ``idle``, ``stalled``, ``stopped`` or ``failed``, from what it does."""
        if self._state != "running":
            return self._state
        now = time.monotonic()
        settings = self.settings
        if self._active and now - min(self._active.values()) > settings.stall_after:
            return "stalled"
        waiting = any(len(sub.mailbox) for sub in self._subs)
        last = max(self._last_activity, self.ctx.last_emit)
        if waiting and not self._active and now - last > settings.stall_after:
            return "stalled"
        if self._active or waiting or now - last < settings.idle_after:
            return "running"
        return "idle"

    def statistics(self) -> AgentStatistics:
        stats = [sub.statistics() for sub in self._subs]
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
        )
