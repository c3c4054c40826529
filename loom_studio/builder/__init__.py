"""The visual agent builder's core: a project read from its code, and code written back.

- :mod:`.model`: the project model (agents, subscriptions, emitted topics, tools, edges);
- :mod:`.reader`: :func:`read_project`, the model read from the source with libcst;
- :mod:`.templates`: the palette (:data:`TEMPLATES`) and :func:`render` of a new agent;
- :mod:`.generate`: :func:`generate`, new modules and ``[agents.<id>]`` entries;
- :mod:`.edits`: surgical edits of the user's code (:func:`add_subscription`,
  :func:`rename_topic`, :func:`set_qos`) that keep comments and formatting, and
  ``[agents.<id>]`` tables of ``loom.toml`` (:func:`set_agent_table`).
"""

from .edits import EditError, add_subscription, edit_file, rename_topic, set_qos
from .generate import GenerateResult, agent_table, generate, set_agent_table
from .model import AgentModel, Edge, Emission, ProjectModel, Subscription, Tool, Unread
from .reader import read_project, read_source
from .templates import TEMPLATES, AgentSpec, render

__all__ = [
    "TEMPLATES",
    "AgentModel",
    "AgentSpec",
    "Edge",
    "EditError",
    "Emission",
    "GenerateResult",
    "ProjectModel",
    "Subscription",
    "Tool",
    "Unread",
    "add_subscription",
    "agent_table",
    "edit_file",
    "generate",
    "read_project",
    "read_source",
    "rename_topic",
    "render",
    "set_agent_table",
    "set_qos",
]
