"""A bus's two ZeroMQ endpoints, named by one URL."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import bus_endpoints
from ...errors import BusError

__all__ = ["BusAddress"]


@dataclass(frozen=True)
class BusAddress:
    """Both endpoints of a bus: publishers connect to ``publish`` (the broker's XSUB),
    subscribers to ``subscribe`` (its XPUB)."""

    publish: str
    subscribe: str

    @classmethod
    def parse(cls, url: str) -> BusAddress:
        """``tcp://h:P`` → P and P+1; ``ipc://x`` / ``inproc://x`` → ``x.in`` and ``x.out``.

        Raises :class:`BusError` naming the accepted forms for anything else.
        """
        try:
            return cls(*bus_endpoints(url))
        except ValueError as exc:
            raise BusError(str(exc)) from None

    def to_dict(self) -> dict[str, str]:
        """``{"publish", "subscribe"}``: the two endpoints, as ``.loom/bus.json`` holds them."""
        return {"publish": self.publish, "subscribe": self.subscribe}
