"""The agents layer: what users write, and what runs it.

- :mod:`.agent`: :class:`Agent`, ``@on_event``, ``@tool``;
- :mod:`.context`: :class:`Context`, a facade over the agent's endpoint and the
  runtime's capabilities;
- :mod:`.runner`: :class:`AgentRunner`, one agent's subscriptions, consumer tasks,
  middleware chain, errors and status.

Imports the capabilities, messaging, tracing, bus and protocol layers below it.
"""

from .agent import AGENT_ID, Agent, ToolSpec, on_event, overrides, tool
from .context import AgentLogger, Context
from .runner import STATUSES, AgentRunner, AgentStatistics

__all__ = [
    "AGENT_ID",
    "STATUSES",
    "Agent",
    "AgentLogger",
    "AgentRunner",
    "AgentStatistics",
    "Context",
    "ToolSpec",
    "on_event",
    "overrides",
    "tool",
]
