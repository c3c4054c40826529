"""``loom run`` and the commands that talk to what it runs.

- ``loom run [PROJECT]``: the supervisor (:mod:`loom_kernel.supervisor`) in the
  foreground until Ctrl-C or SIGTERM;
- ``loom start|stop|restart AGENT``: control requests to the supervisor;
- ``loom status``: agents, their state and rates, from the bus;
- ``loom logs [AGENT] [-f]``: recent log lines (kept by the supervisor) and, with
  ``-f``, the new ones as they travel on ``loom.log.<agent>``;
- ``loom emit TOPIC JSON`` / ``loom request TOPIC JSON`` / ``loom subscribe PATTERN``: the
  bus from a terminal, with the verbs of ``ctx.emit`` and ``ctx.request``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..config import LoomConfig
from ..errors import LoomError, RemoteError, RequestTimeout
from ..ops.supervisor import CONTROL_TOPIC, LOGS_TOPIC, STATE_TOPIC, Supervisor
from ..protocol import reserved
from ..runtime import Runtime, open_runtime
from ..tracing import export_loss
from .project import join_running_bus, load_project, stop_event

ConfigOption = Annotated[Path | None, typer.Option("--config", help="The project's loom.toml.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
NO_BUS = "no bus runs for this project: start the agents with `loom run` (or `loom bus`)"


@contextlib.asynccontextmanager
async def _joined(settings: LoomConfig) -> Any:
    if settings.path is None and settings.bus.url is None:
        raise LoomError("no loom.toml here or above: run this in a Loom project (`loom init`)")
    async with join_running_bus(settings) as rt:
        if rt is None:
            raise LoomError(NO_BUS)
        yield rt


# -- loom run -------------------------------------------------------------------------


def run(
    project: Annotated[
        Path | None, typer.Argument(help="The project folder (or its loom.toml).")
    ] = None,
    group: Annotated[str | None, typer.Option(help="Run only this group's agents.")] = None,
    only: Annotated[
        str | None, typer.Option(help="Run only these agents (comma-separated).")
    ] = None,
    reload: Annotated[
        bool,
        typer.Option("--reload", help="Swap new code into running agents when their files change."),
    ] = False,
) -> None:
    """Run the project's agents, each group in its own process, restarting crashed ones.

    With `--reload`, an edited agent module is reloaded inside its running worker: no
    restart, no lost event, subscriptions and state kept; a file that does not load
    leaves the running code in place (its error is in the worker's log).

    Example: `loom run`, `loom run my-project --only planner,executor`, `loom run --reload`.
    """
    if project is not None and project.is_dir():
        project = project / "loom.toml"
    settings = load_project(project)
    if settings.path is None:
        raise LoomError("no loom.toml here or above: create a project with `loom init`")
    asyncio.run(_run(settings, group, only.split(",") if only else None, reload))


async def _run(
    settings: LoomConfig, group: str | None, only: list[str] | None, reload: bool = False
) -> None:
    console = Console(stderr=True)
    stop = stop_event()
    async with open_runtime(settings) as rt:
        if not rt.embedded:  # joined a running bus: is this project already supervised?
            for state in await _states(rt, max(1.0, 2.5 * settings.runtime.heartbeat_interval)):
                running = {w["worker"] for w in state["workers"]}
                if group is None or group in running:
                    raise LoomError(
                        f"`loom run` already runs this project ({state['supervisor']}, workers "
                        f"{', '.join(sorted(running))}): stop it first, or use `loom start`, "
                        "`loom stop` and `loom restart`"
                    )
        supervisor = Supervisor(rt, settings, group=group, only=only, reload=reload)
        await supervisor.start()
        where = rt.address.publish if rt.address else "the bus"
        console.print(f"[bold green]loom run[/]: {len(supervisor.workers)} worker(s) on {where}")
        for worker in supervisor.workers.values():
            console.print(
                f"  {worker.name}: {', '.join(worker.agents)}  (restart {worker.restart})"
            )
        console.print(
            "Ctrl-C stops everything; `loom status` in another terminal shows the agents."
        )
        try:
            await stop.wait()
        finally:
            console.print("stopping the workers…")
            await supervisor.aclose()
    console.print("[bold]stopped[/]")


# -- loom start / stop / restart ------------------------------------------------------


def _control(action: str):
    def command(
        agent: Annotated[str, typer.Argument(help="The agent id.")],
        config: ConfigOption = None,
        timeout: Annotated[float, typer.Option(help="Seconds to wait for the supervisor.")] = 15.0,
    ) -> None:
        settings = load_project(config)
        result = asyncio.run(_send(settings, action, agent, timeout))
        others = [name for name in result["agents"] if name != agent]
        together = (
            f" (with {', '.join(others)}: same worker {result['worker']!r})" if others else ""
        )
        Console().print(f"{action}: {agent}{together}")

    command.__doc__ = (
        f"{action.capitalize()} an agent that `loom run` supervises. "
        f"Example: `loom {action} planner`."
    )
    return command


async def _send(settings: LoomConfig, action: str, agent: str, timeout: float) -> dict[str, Any]:
    async with _joined(settings) as rt:
        wait = max(1.0, 2.5 * settings.runtime.heartbeat_interval)
        known = await _known_agents(rt, wait)
        if not known:
            raise LoomError(
                "no supervisor answers on this project's bus: start the agents with `loom run`"
            )
        if agent not in known:
            raise LoomError(
                f"no agent {agent!r} under `loom run` (agents: {', '.join(sorted(known))})"
            )
        try:
            with rt.tracing.unsampled():  # housekeeping, not a workflow
                reply = await rt.request(
                    CONTROL_TOPIC, {"action": action, "agent": agent}, timeout=timeout
                )
        except RequestTimeout:
            raise LoomError(
                f"the supervisor did not confirm {action} {agent!r} within {timeout:g} s"
            ) from None
        except RemoteError as exc:
            who = "the bus" if exc.error_type == "AccessDenied" else "the supervisor"
            raise LoomError(f"{who} refused: {exc.remote_message}") from None
        return reply.data


async def _known_agents(rt: Runtime, wait: float = 2.5) -> set[str]:
    states = await _states(rt, wait)
    return {agent for state in states for worker in state["workers"] for agent in worker["agents"]}


async def _states(rt: Runtime, wait: float) -> list[dict[str, Any]]:
    sub = await rt.subscribe(STATE_TOPIC)
    found: dict[str, dict[str, Any]] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    with contextlib.suppress(TimeoutError):
        while loop.time() < deadline:
            event = await sub.get(timeout=max(0.01, deadline - loop.time()))
            found[event.data["supervisor"]] = event.data
    await sub.aclose()
    return list(found.values())


# -- loom status ----------------------------------------------------------------------


def status(
    config: ConfigOption = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Keep updating until Ctrl-C.")
    ] = False,
    as_json: JsonOption = False,
    wait: Annotated[float, typer.Option(help="Seconds to listen for heartbeats.")] = 2.5,
) -> None:
    """Agents on the project's bus: status, rates, errors; and what `loom run` supervises.

    Example: `loom status`, `loom status --watch`, `loom status --json`.
    """
    settings = load_project(config)
    asyncio.run(_status(settings, watch, as_json, wait))


async def _status(settings: LoomConfig, watch: bool, as_json: bool, wait: float) -> None:
    async with _joined(settings) as rt:
        board = _Board()
        patterns = (
            reserved.AGENT_REPORTS,
            STATE_TOPIC,
            reserved.CLIENT_STATS,
            reserved.BROKER_STATS,
            reserved.ALL_DENIED,  # on a CURVE bus: what the broker refused, and why
        )
        subs = [await rt.subscribe(p, qos="realtime") for p in patterns]
        pumps = [asyncio.get_running_loop().create_task(board.pump(sub)) for sub in subs]
        try:
            if watch:
                stop = stop_event()
                with Live(board.render(), refresh_per_second=2, console=Console()) as live:
                    while not stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), 0.5)
                        live.update(board.render())
                return
            await asyncio.sleep(wait)
            if as_json:
                print(json.dumps(board.rows(), indent=2))
            else:
                Console().print(board.render())
        finally:
            for pump in pumps:
                pump.cancel()


class _Board:
    """Latest heartbeat per agent, the supervisors' workers, and handled-count rates."""

    def __init__(self) -> None:
        self.beats: dict[str, dict[str, Any]] = {}
        self.first: dict[str, tuple[float, int]] = {}
        self.workers: dict[str, dict[str, Any]] = {}
        self.tracing: dict[str, dict[str, Any]] = {}  # per process, from its stats
        self.bus: dict[str, dict[str, Any]] = {}  # per process: its view of the bus
        self.denied = 0  # messages the broker refused since it started (a CURVE bus)
        self.refusals: dict[str, tuple[int, str]] = {}  # identity -> (count, last reason)

    async def pump(self, sub: Any) -> None:
        async for event in sub:
            data = event.data if isinstance(event.data, dict) else {}
            if event.topic.startswith("loom.client."):
                process = data.get("client_id", event.source)
                self.tracing[process] = data.get("tracing") or {}
                self.bus[process] = data.get("bus") or {}
            elif event.topic == reserved.BROKER_STATS:
                self.denied = int(data.get("denied") or 0)
            elif event.topic.startswith(reserved.SECURITY_DENIED + "."):
                identity = str(data.get("identity"))
                count, _ = self.refusals.get(identity, (0, ""))
                reason = f"{data.get('action')} {data.get('topic')}: {data.get('reason')}"
                self.refusals[identity] = (count + 1 + int(data.get("left_out") or 0), reason)
            elif event.topic == STATE_TOPIC:
                for worker in data.get("workers", []):
                    for agent in worker["agents"]:
                        self.workers[agent] = worker
            elif event.topic.endswith(".heartbeat") and "agent_id" in data:
                agent = data["agent_id"]
                self.beats[agent] = {**data, "seen": time.monotonic()}
                self.first.setdefault(agent, (time.monotonic(), data.get("handled", 0)))
            elif event.topic.endswith(".error") and data.get("agent"):
                self.beats.setdefault(data["agent"], {})["last_error"] = (
                    f"{data.get('error')}: {data.get('message')}"
                )

    def rows(self) -> list[dict[str, Any]]:
        rows = []
        for agent in sorted(set(self.beats) | set(self.workers)):
            beat, worker = self.beats.get(agent, {}), self.workers.get(agent, {})
            since, handled0 = self.first.get(agent, (time.monotonic(), 0))
            elapsed = time.monotonic() - since
            rate = (beat.get("handled", 0) - handled0) / elapsed if elapsed > 0.5 else None
            status = beat.get("status") or worker.get("state") or "unknown"
            if worker and worker.get("state") in ("stopped", "failed", "backoff"):
                status = worker["state"]
            rows.append(
                {
                    "agent": agent,
                    "status": status,
                    "worker": worker.get("worker"),
                    "pid": worker.get("pid") or beat.get("pid"),
                    "restarts": worker.get("restarts", 0),
                    "handled": beat.get("handled", 0),
                    "rate_per_s": round(rate, 1) if rate is not None else None,
                    "errors": beat.get("errors", 0),
                    "last_error": beat.get("last_error") or worker.get("error"),
                    "stalls": beat.get("stalls", 0),
                    "blocked_by": beat.get("blocked_by") if status == "stalled" else None,
                    "timeouts": beat.get("timeouts", 0),
                }
            )
        return rows

    def notes(self) -> list[str]:
        """What the agents table does not say: a blocked event loop, bus failovers, spans
        lost on the way to an OTLP backend."""
        notes = [
            f"{row['agent']}: its process's event loop is blocked by {row['blocked_by']} "
            "(a handler that does not await: run blocking work in asyncio.to_thread)"
            for row in self.rows()
            if row["blocked_by"]
        ]
        for process, bus in sorted(self.bus.items()):
            if bus.get("state") == "lost":
                notes.append(f"bus, {process}: lost, failing over")
            elif bus.get("failovers"):
                notes.append(
                    f"bus, {process}: failed over {bus['failovers']} time(s), last outage "
                    f"{bus.get('last_outage_ms', 0):g} ms (events lost meanwhile are counted "
                    "in the subscribers' lost)"
                )
        lost = (export_loss(process, tracing) for process, tracing in sorted(self.tracing.items()))
        notes += [note for note in lost if note]
        if self.denied:
            notes.append(
                f"security: the broker refused {self.denied} message(s) since it started "
                "(loom subscribe 'loom.security.denied.*' shows each, with why)"
            )
        for identity, (count, reason) in sorted(self.refusals.items()):
            notes.append(f"security, {identity}: {count} refused just now, e.g. {reason}")
        return notes

    def render(self) -> Group:
        return Group(self.table(), *(Text(note, style="yellow") for note in self.notes()))

    def table(self) -> Table:
        table = Table(title="agents")
        for column in (
            "agent",
            "status",
            "worker",
            "pid",
            "restarts",
            "handled",
            "ev/s",
            "errors",
            "last error",
        ):
            table.add_column(column, overflow="fold")
        colours = {
            "running": "green",
            "idle": "cyan",
            "stalled": "yellow",
            "failed": "red",
            "backoff": "yellow",
        }
        for row in self.rows():
            colour = colours.get(row["status"], "white")
            table.add_row(
                row["agent"], f"[{colour}]{row['status']}[/]", row["worker"] or "-",
                str(row["pid"] or "-"), str(row["restarts"]), str(row["handled"]),
                "-" if row["rate_per_s"] is None else f"{row['rate_per_s']:g}",
                str(row["errors"]), escape(row["last_error"] or ""),
            )  # fmt: skip
        return table


# -- loom logs ------------------------------------------------------------------------


def logs(
    agent: Annotated[str | None, typer.Argument(help="One agent (default: all).")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    lines: Annotated[int, typer.Option("--lines", "-n", help="Recent lines to show.")] = 50,
    config: ConfigOption = None,
) -> None:
    """Agents' log lines: the recent ones (kept by `loom run`), then new ones with -f.

    Example: `loom logs planner -f`.
    """
    settings = load_project(config)
    asyncio.run(_logs(settings, agent, follow, lines))


async def _logs(settings: LoomConfig, agent: str | None, follow: bool, lines: int) -> None:
    out = Console(highlight=False)
    async with _joined(settings) as rt:
        sub = (
            await rt.subscribe(reserved.log(agent) if agent else reserved.LOGS) if follow else None
        )
        with contextlib.suppress(RequestTimeout), rt.tracing.unsampled():
            reply = await rt.request(LOGS_TOPIC, {"agent": agent, "limit": lines}, timeout=2.0)
            for line in reply.data:
                _print_line(out, line)
            if agent and not reply.data:
                Console(stderr=True).print(f"no log lines kept for {agent!r} yet")
        if sub is None:
            return
        stop = stop_event()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                event = await sub.get(timeout=0.5)
                _print_line(
                    out,
                    {**event.data, "agent": event.topic.rsplit(".", 1)[-1], "ts": event.ts / 1e9},
                )


def _print_line(out: Console, line: dict[str, Any]) -> None:
    when = datetime.fromtimestamp(line.get("ts") or time.time()).strftime("%H:%M:%S")
    level = str(line.get("level", "INFO"))
    colour = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "red"}.get(level, "dim")
    message = escape(str(line.get("message", "")))
    out.print(f"{when} [{colour}]{level:<7}[/] {line.get('agent')}: {message}")


# -- loom emit / request / subscribe ---------------------------------------------------

TopicArgument = Annotated[str, typer.Argument(help="A concrete topic, e.g. market.price.AAPL.")]
DataArgument = Annotated[str, typer.Argument(help="JSON data, e.g. '{\"price\": 1.5}'.")]
TimeoutOption = Annotated[float, typer.Option(help="Seconds to wait for a reply.")]


def emit(topic: TopicArgument, data: DataArgument = "null", config: ConfigOption = None) -> None:
    """Publish one event on the project's bus, as `ctx.emit` does.

    Example: `loom emit hello.world '{"name": "Ada"}'`.
    """
    asyncio.run(_emit_or_request(load_project(config), topic, _json(data), None))


def request(
    topic: TopicArgument,
    data: DataArgument = "null",
    timeout: TimeoutOption = 5.0,
    config: ConfigOption = None,
) -> None:
    """Send a request on the project's bus and print the first reply, as `ctx.request` does.

    Example: `loom request hello.world '{"name": "Ada"}'`.
    """
    asyncio.run(_emit_or_request(load_project(config), topic, _json(data), timeout))


def publish(
    topic: TopicArgument,
    data: DataArgument = "null",
    request: Annotated[
        bool, typer.Option("--request", help="Wait for a reply and print it.")
    ] = False,
    timeout: TimeoutOption = 5.0,
    config: ConfigOption = None,
) -> None:
    """The former name of `loom emit` (and, with --request, of `loom request`): kept for one
    release, hidden from the command list."""
    Console(stderr=True).print(
        "note: `loom publish` is now `loom emit`, and `loom publish --request` is `loom request`"
    )
    asyncio.run(
        _emit_or_request(load_project(config), topic, _json(data), timeout if request else None)
    )


def _json(data: str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError as exc:
        raise LoomError(
            f"DATA is not JSON ({exc.msg} at column {exc.colno}): quote it, e.g. '{{\"x\": 1}}'"
        ) from None


async def _emit_or_request(
    settings: LoomConfig, topic: str, value: Any, timeout: float | None
) -> None:
    """Emit ``value`` on ``topic``, or (with a ``timeout``) request and print the reply."""
    async with _joined(settings) as rt:
        if timeout is not None:
            reply = await rt.request(topic, value, timeout=timeout)
            print(json.dumps(reply.data, indent=2, default=str))
        else:
            sent = await rt.emit(topic, value)
            Console(stderr=True).print(f"published {sent.id} on {topic}")


def subscribe(
    pattern: Annotated[str, typer.Argument(help="A topic pattern, e.g. market.price.*")],
    count: Annotated[int | None, typer.Option("--count", "-n", help="Stop after N events.")] = None,
    as_json: JsonOption = False,
    config: ConfigOption = None,
) -> None:
    """Print the events of a topic pattern until Ctrl-C (or --count).

    Example: `loom subscribe 'analysis.*' --json`.
    """
    settings = load_project(config)
    asyncio.run(_subscribe(settings, pattern, count, as_json))


async def _subscribe(settings: LoomConfig, pattern: str, count: int | None, as_json: bool) -> None:
    out = Console(highlight=False)
    async with _joined(settings) as rt:
        sub = await rt.subscribe(pattern)
        Console(stderr=True).print(f"listening on {pattern} (Ctrl-C stops)")
        stop = stop_event()
        seen = 0
        while not stop.is_set() and (count is None or seen < count):
            with contextlib.suppress(TimeoutError):
                event = await sub.get(timeout=0.5)
                seen += 1
                if as_json:
                    print(
                        json.dumps(
                            {
                                "topic": event.topic,
                                "source": event.source,
                                "id": event.id,
                                "data": event.data,
                            },
                            default=str,
                        ),
                        flush=True,
                    )
                else:
                    text = escape(json.dumps(event.data, default=str))
                    out.print(f"[bold]{event.topic}[/] [dim]{event.source}[/] {text}")
