"""Reserved topics: everything Loom itself publishes lives under ``loom.``.

This module is the one place that spells them; every other module, the studio and the
CLI build reserved topics with these names and functions (``docs/PROTOCOL.md`` lists
them). User topics may use any other first segment.

>>> heartbeat("planner")
'loom.agent.planner.heartbeat'
>>> tool_name(tool_topic("web-search"))
'web-search'
"""

from __future__ import annotations

__all__ = [
    "AGENT_ERRORS",
    "AGENT_REPORTS",
    "ALL_DENIED",
    "ALL_SPANS",
    "BARRIER_PREFIX",
    "BROKER_STATS",
    "BUS_BEAT",
    "CLIENT_STATS",
    "CODE_RELOAD",
    "EVENTLOG_COMMIT",
    "EVENTLOG_FETCH",
    "EVENTLOG_PREFIX",
    "EVENTLOG_RESUME",
    "EVENTLOG_STATS",
    "EVENTLOG_STORE",
    "HEARTBEATS",
    "LOGS",
    "LOOM_PREFIX",
    "PROBE_PREFIX",
    "REPLAY_PREFIX",
    "REPLY_PREFIX",
    "SECURITY_DENIED",
    "SPANS_PREFIX",
    "SUPERVISOR_CONTROL",
    "SUPERVISOR_LOGS",
    "SUPERVISOR_STATE",
    "TOOLS_CHANGED",
    "TOOLS_QUERY",
    "TOOL_PREFIX",
    "agent_error",
    "barrier",
    "client_stats",
    "eventlog_ack",
    "heartbeat",
    "inbox",
    "is_reserved",
    "llm_usage",
    "log",
    "probe",
    "reloaded",
    "replay_prefix",
    "security_denied",
    "spans",
    "tool_name",
    "tool_topic",
]

#: Every reserved topic starts with this segment.
LOOM_PREFIX = "loom."

# -- the bus's own plumbing (one client's business, never handled by agents) -------
#: ``loom.probe.<client>.<n>``: a client's round trip proving a subscription is live.
PROBE_PREFIX = "loom.probe."
#: ``loom.reply.<client>.<owner>``: the inbox where an owner's replies arrive.
REPLY_PREFIX = "loom.reply."
#: The broker's own beat: clients that stop hearing it fail the bus over.
BUS_BEAT = "loom.bus.beat"

# -- agents' reports ----------------------------------------------------------------
#: ``loom.agent.<id>.heartbeat`` / ``.error``, ``loom.log.<id>``.
_AGENT_PREFIX = "loom.agent."
_LOG_PREFIX = "loom.log."
#: ``loom.client.<client>.stats`` and ``loom.broker.stats``: bus statistics.
BROKER_STATS = "loom.broker.stats"
#: ``loom.llm.<provider>.usage``: tokens, cost and latency of each LLM call.
_LLM_PREFIX = "loom.llm."

# -- tools ----------------------------------------------------------------------------
#: ``loom.tool.<name>``: requests to an agent's ``@tool``.
TOOL_PREFIX = "loom.tool."
#: Every runtime answers with its agents' tools; a runtime announces changes.
TOOLS_QUERY = "loom.tools.query"
TOOLS_CHANGED = "loom.tools.changed"

# -- tracing and collaboration --------------------------------------------------------
#: ``loom.trace.spans.<client>``: batches of finished spans.
SPANS_PREFIX = "loom.trace.spans"
#: ``loom.barrier.<name>``: parties arriving at a barrier.
BARRIER_PREFIX = "loom.barrier."

# -- new code for running agents ----------------------------------------------------
#: A request ``{"module": "agents.trend"}``: every runtime running agents whose class that
#: module defines reloads it (``rt.reload_module``) and replies; the others stay silent.
#: The studio's editor asks it when the agents run in other processes.
CODE_RELOAD = "loom.code.reload"

# -- the event log (docs/durability.md) -----------------------------------------------
EVENTLOG_PREFIX = "loom.eventlog."
#: Requests to the event log: a durable subscription's cursor and the events it missed.
EVENTLOG_RESUME = "loom.eventlog.resume"
EVENTLOG_FETCH = "loom.eventlog.fetch"
#: A subscriber's cursor moving on; a publisher's events sent again after no ack came.
EVENTLOG_COMMIT = "loom.eventlog.commit"
EVENTLOG_STORE = "loom.eventlog.store"
#: The event log's statistics, every second.
EVENTLOG_STATS = "loom.eventlog.stats"
#: ``replay.<namespace>.<topic>``: events replayed into an isolated namespace.
REPLAY_PREFIX = "replay."

# -- security (docs/security.md) --------------------------------------------------------
#: ``loom.security.denied.<identity>``: what a CURVE bus's broker refused an identity, and why.
SECURITY_DENIED = "loom.security.denied"

# -- loom run ---------------------------------------------------------------------------
SUPERVISOR_STATE = "loom.supervisor.state"
SUPERVISOR_CONTROL = "loom.supervisor.control"
SUPERVISOR_LOGS = "loom.supervisor.logs"


def is_reserved(topic: str) -> bool:
    """True for Loom's own topics (``loom.…``)."""
    return topic.startswith(LOOM_PREFIX)


def probe(client_id: str, n: int) -> str:
    return f"{PROBE_PREFIX}{client_id}.{n}"


def inbox(client_id: str, owner: str) -> str:
    return f"{REPLY_PREFIX}{client_id}.{owner}"


def heartbeat(agent_id: str) -> str:
    return f"{_AGENT_PREFIX}{agent_id}.heartbeat"


def agent_error(agent_id: str) -> str:
    return f"{_AGENT_PREFIX}{agent_id}.error"


def reloaded(agent_id: str) -> str:
    """``loom.agent.<id>.reloaded``: a reload of the agent's code, done or refused."""
    return f"{_AGENT_PREFIX}{agent_id}.reloaded"


def log(agent_id: str) -> str:
    return f"{_LOG_PREFIX}{agent_id}"


def client_stats(client_id: str) -> str:
    return f"loom.client.{client_id}.stats"


def llm_usage(provider: str) -> str:
    return f"{_LLM_PREFIX}{provider}.usage"


def tool_topic(name: str) -> str:
    return f"{TOOL_PREFIX}{name}"


def tool_name(topic: str) -> str | None:
    """The tool a ``loom.tool.<name>`` topic (or pattern) serves, None for other topics."""
    return topic[len(TOOL_PREFIX) :] if topic.startswith(TOOL_PREFIX) else None


def spans(client_id: str) -> str:
    return f"{SPANS_PREFIX}.{client_id}"


def barrier(name: str) -> str:
    return f"{BARRIER_PREFIX}{name}"


def eventlog_ack(client_id: str) -> str:
    """``loom.eventlog.ack.<client>``: the event log acknowledging a publisher's events."""
    return f"{EVENTLOG_PREFIX}ack.{client_id}"


def security_denied(identity: str) -> str:
    """``loom.security.denied.<identity>``: the broker's refusals of one identity."""
    return f"{SECURITY_DENIED}.{identity}"


def replay_prefix(namespace: str) -> str:
    """``replay.<namespace>.``: what every topic of a replay namespace starts with."""
    return f"{REPLAY_PREFIX}{namespace}."


#: Patterns for the reports above, for observers (the studio, ``loom logs``).
AGENT_REPORTS = "loom.agent.*"
HEARTBEATS = "loom.agent.*.heartbeat"
AGENT_ERRORS = "loom.agent.*.error"
LOGS = "loom.log.*"
ALL_SPANS = f"{SPANS_PREFIX}.*"
CLIENT_STATS = "loom.client.*"
ALL_DENIED = f"{SECURITY_DENIED}.*"
