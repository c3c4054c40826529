"""Building kernel components by hand, as the runtime does, over a fake transport."""

from __future__ import annotations

from pathlib import Path

from loom_kernel import LoomConfig
from loom_kernel.agents import Context
from loom_kernel.bus import Transport
from loom_kernel.capabilities import ActionBroker, Capabilities, MemoryStore
from loom_kernel.config import parse_config
from loom_kernel.messaging import Endpoint
from loom_kernel.tracing import NO_TRACER, Tracer

__all__ = ["make_context"]


def make_context(
    transport: Transport,
    agent_id: str,
    folder: Path,
    *,
    config: LoomConfig | None = None,
    tracer: Tracer = NO_TRACER,
    actions: ActionBroker | None = None,
) -> Context:
    """A context wired like the runtime wires one, with the collaborators given."""
    config = config or parse_config({}, path=folder / "loom.toml")
    actions = actions or ActionBroker(config.mcp, folder, tracer=tracer)
    store: list[MemoryStore] = []

    def memory_store() -> MemoryStore:
        if not store:
            store.append(MemoryStore(folder / "memory.db"))
        return store[0]

    capabilities = Capabilities(config, actions, memory_store, tracer=tracer)
    endpoint = Endpoint(transport, agent_id, tracer=tracer, max_hops=config.runtime.max_hops)
    return Context(endpoint, capabilities, config)
