"""One tenant's part of the bus, for a studio that shows only it (``loom studio --tenant``).

``[tenants.<name>]`` of ``loom.toml`` gives a tenant a topic prefix and its identities
(``docs/security.md``). On a CURVE bus, each agent's heartbeat names the identity its
process proves, and the broker refuses one that names another; so the studio knows which
agents are the tenant's, and from their heartbeats which processes. The view admits:

- the events of the tenant's namespace (``<prefix>`` and ``<prefix>.…``);
- the heartbeats, errors and logs of the tenant's agents;
- the statistics, spans and tool announcements of the tenant's processes;
- the broker's statistics (the bus they share).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loom_kernel import LoomConfig, LoomError
from loom_kernel.protocol import Envelope, reserved

__all__ = ["TenantView"]


@dataclass
class TenantView:
    """What the studio shows of tenant ``name``."""

    name: str
    prefix: str
    identities: frozenset[str]
    agents: set[str] = field(default_factory=set)
    processes: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, config: LoomConfig, name: str) -> TenantView:
        """Tenant ``name`` of the project.

        Raises:
            LoomError: no ``[tenants.<name>]`` in the project (the message lists them).
        """
        tenant = config.tenants.get(name)
        if tenant is None:
            known = ", ".join(sorted(config.tenants)) or "none"
            raise LoomError(
                f"no tenant {name!r} in {config.path or 'loom.toml'} (tenants: {known}); "
                "declare it as [tenants.<name>] with its identities (docs/security.md)"
            )
        return cls(name, tenant.prefix or name, frozenset(tenant.identities))

    def admits(self, event: Envelope) -> bool:
        """Does ``event`` belong to the tenant's view?"""
        topic = event.topic
        if not reserved.is_reserved(topic):
            return topic == self.prefix or topic.startswith(self.prefix + ".")
        parts = topic.split(".")
        data: dict[str, Any] = event.data if isinstance(event.data, dict) else {}
        if parts[1] == "agent" and len(parts) >= 4 and parts[-1] == "heartbeat":
            if "identity" not in data:  # the watchdog's beats of a stalled agent say no more
                return parts[2] in self.agents
            if data["identity"] not in self.identities:
                return False
            self.agents.add(parts[2])
            if data.get("process"):
                self.processes.add(str(data["process"]))
            return True
        if parts[1] in ("agent", "log") and len(parts) >= 3:
            return parts[2] in self.agents
        if parts[1] == "client" and len(parts) >= 3:
            return parts[2] in self.processes
        if topic.startswith(reserved.SPANS_PREFIX + "."):
            return parts[3] in self.processes
        if topic == reserved.TOOLS_CHANGED:
            return str(data.get("process")) in self.processes
        return topic == reserved.BROKER_STATS
