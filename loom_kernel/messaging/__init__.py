"""The messaging layer: talking on the bus as someone.

- :mod:`.endpoint`: :class:`Endpoint`, one source's publish, emit, request, reply and
  subscribe, with the causal context (thread, hops, trace) carried along;
- :mod:`.collaboration`: fan-out, fan-in, barrier and contract net, typed on an endpoint.

Imports the tracing, bus and protocol layers below it.
"""

from .collaboration import (
    BarrierTimeout,
    ContractResult,
    FanInResult,
    barrier,
    bid,
    contract_net,
    fan_in,
    fan_out,
)
from .endpoint import Endpoint, current_event, raise_if_error

__all__ = [
    "BarrierTimeout",
    "ContractResult",
    "Endpoint",
    "FanInResult",
    "barrier",
    "bid",
    "contract_net",
    "current_event",
    "fan_in",
    "fan_out",
    "raise_if_error",
]
