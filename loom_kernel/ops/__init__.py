"""The operations layer: running a project, on top of the runtime.

- :mod:`.supervisor` and :mod:`.worker`: ``loom run``'s worker processes, restarts and
  control on the bus;
- :mod:`.deploy`: ``loom deploy``'s container image, Compose and Kubernetes files;
- :mod:`.bench`: ``loom bench``;
- :mod:`.mcp_bridge`: the bus's tools as an MCP server (``loom mcp serve``).
"""
