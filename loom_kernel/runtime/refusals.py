"""What a CURVE bus refused this process's identity, in its own log.

On a CURVE bus the broker publishes each refusal on ``loom.security.denied.<identity>``
(``docs/security.md``), and every identity may subscribe to its own. A runtime does, and
logs them on ``loom.security``: a subscription its ACL does not cover, which would
otherwise just stay silent, says why in the process that made it.
"""

from __future__ import annotations

import logging

from ..bus.transport import Subscription
from ..messaging.endpoint import Endpoint
from ..protocol import reserved
from .background import Background

__all__ = ["RefusalLog"]

log = logging.getLogger("loom.security")


class RefusalLog(Background):
    """Logs the bus's refusals of ``identity`` while started."""

    def __init__(self, endpoint: Endpoint, identity: str):
        self.endpoint = endpoint
        self.identity = identity

    async def start(self) -> None:
        sub = await self.endpoint.subscribe(reserved.security_denied(self.identity))
        self._spawn(self._log(sub), "loom:security:refusals")

    async def _log(self, sub: Subscription) -> None:
        async for event in sub:
            data = event.data if isinstance(event.data, dict) else {}
            log.warning(
                "the bus refused %s %s of identity %s: %s",
                data.get("action", "?"),
                data.get("topic") or "(no topic)",
                self.identity,
                data.get("reason", "?"),
            )
