"""The visual agent builder's core: a project read from its code, and code written back.

- :mod:`.model`: the project model (agents, subscriptions, emitted topics, tools, edges);
- :mod:`.reader`: :func:`read_project`, the model read from the source with libcst;
- :mod:`.templates`: the palette (:data:`TEMPLATES`) and :func:`render` of a new agent;
- :mod:`.generate`: :func:`generate`, new modules and ``[agents.<id>]`` entries;
- :mod:`.edits`: surgical edits of the user's code (:func:`add_subscription`,
  :func:`rename_topic`) that keep comments and formatting.
"""

from .edits import EditError, add_subscription, edit_file, rename_topic
from .generate import GenerateResult, generate
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
    "edit_file",
    "generate",
    "read_project",
    "read_source",
    "rename_topic",
    "render",
]
