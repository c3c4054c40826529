"""The builder's project model: the agents of a project as their code says.

Read from the Python source (:mod:`.reader`), never by importing it: each agent's
subscriptions (``@on_event``), the tools it serves (``@tool``), and the topics it emits,
requests and the tools it calls, as far as they are written as literals. A topic built at
run time from literal parts (``f"plan.{symbol}"``) is kept as a pattern, its run-time
parts as ``*`` (``plan.*``), and marked ``static=False``; one the code computes in a way
the reader cannot follow (a variable, a call) is listed in :attr:`AgentModel.unread`,
never guessed.

The edges of the graph (:meth:`ProjectModel.edges`) join an emitted topic to every
subscription whose pattern matches it, with the kernel's own matcher; a run-time part
stands for any one segment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loom_kernel.protocol import compile_pattern

__all__ = ["AgentModel", "Edge", "Emission", "ProjectModel", "Subscription", "Tool", "Unread"]


@dataclass(frozen=True)
class Subscription:
    """One ``@on_event(pattern, qos=...)`` of an agent (``kind="on_event"``), or a
    pattern a handler gathers with ``ctx.fan_in([...])`` (``kind="fan_in"``)."""

    pattern: str
    method: str
    qos: str = "reliable"
    line: int = 0
    kind: str = "on_event"


@dataclass(frozen=True)
class Emission:
    """A topic an agent sends on: ``ctx.emit`` (``kind="emit"``) or ``ctx.request``.

    ``topic`` is the literal topic, or a pattern with ``*`` for its run-time parts
    (``static`` False).
    """

    topic: str
    method: str
    kind: str = "emit"
    static: bool = True
    line: int = 0


@dataclass(frozen=True)
class Tool:
    """A tool: served (``@tool``) or called (``ctx.tool(name, ...)``)."""

    name: str
    method: str
    line: int = 0


@dataclass(frozen=True)
class Unread:
    """Something the reader saw and could not read statically, said as such."""

    what: str  # e.g. "ctx.emit(topic, ...)"
    method: str
    line: int
    reason: str


@dataclass
class AgentModel:
    """One agent class of the project and what its code declares."""

    id: str
    class_name: str
    module: str  # dotted, from the project folder (``agents.greeter``)
    file: str  # relative to the project folder
    line: int
    observer: bool = False  # ``traced = False``: it watches, it is not in the flow
    subscriptions: list[Subscription] = field(default_factory=list)
    emissions: list[Emission] = field(default_factory=list)
    tools: list[Tool] = field(default_factory=list)
    tool_calls: list[Tool] = field(default_factory=list)
    unread: list[Unread] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)  # its ``[agents.<id>]`` table

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "class_name": self.class_name, "module": self.module,
            "file": self.file, "line": self.line, "observer": self.observer,
            "subscriptions": [s.__dict__ for s in self.subscriptions],
            "emissions": [e.__dict__ for e in self.emissions],
            "tools": [t.__dict__ for t in self.tools],
            "tool_calls": [t.__dict__ for t in self.tool_calls],
            "unread": [u.__dict__ for u in self.unread], "config": dict(self.config),
        }  # fmt: skip


@dataclass(frozen=True)
class Edge:
    """An emitted topic delivered to a subscription: ``source`` → ``target``."""

    source: str
    topic: str
    target: str
    pattern: str


@dataclass
class ProjectModel:
    """A project's agents, read from its code and its ``loom.toml``."""

    folder: str
    agents: list[AgentModel] = field(default_factory=list)
    llms: list[str] = field(default_factory=list)  # ``[llm.<name>]``
    problems: list[str] = field(default_factory=list)  # files that do not parse, ...

    def agent(self, agent_id: str) -> AgentModel:
        for agent in self.agents:
            if agent.id == agent_id:
                return agent
        known = ", ".join(a.id for a in self.agents) or "none"
        raise KeyError(f"no agent {agent_id!r} in the project (agents: {known})")

    def edges(self) -> list[Edge]:
        """Every (emitter, topic) → (subscriber, pattern) pair the kernel would deliver."""
        edges = []
        for source in self.agents:
            for emission in source.emissions:
                sample = _sample(emission.topic)
                for target in self.agents:
                    for sub in target.subscriptions:
                        if compile_pattern(sub.pattern).matches(sample):
                            edges.append(Edge(source.id, emission.topic, target.id, sub.pattern))
        return sorted(set(edges), key=lambda e: (e.source, e.topic, e.target, e.pattern))

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "agents": [agent.to_dict() for agent in self.agents],
            "edges": [edge.__dict__ for edge in self.edges()],
            "llms": list(self.llms),
            "problems": list(self.problems),
        }


def _sample(topic: str) -> str:
    """A concrete topic standing for a pattern of emitted topics: ``*`` → one segment."""
    return ".".join("x" if part == "*" else part for part in topic.split("."))
