"""On a NATS bus no process hosts the bus; one per project stores the spans (the holder of
``.loom/nats-host.lock``), and another takes that over when it ends (issue 25: tracing
works unchanged on either backend)."""

from __future__ import annotations

from pathlib import Path

import pytest

from loom_kernel import Agent, on_event, open_runtime
from loom_kernel.bus.nats.server import LocalCluster
from loom_kernel.runtime import Runtime
from tests.conftest import wait_until
from tests.support.nats import nats_server, nats_toml

__all__ = ["nats_server"]
pytestmark = pytest.mark.timeout(60)


class Answerer(Agent):
    @on_event("ask.*")
    async def answer(self, event, ctx):
        await ctx.reply(event, event.data + 1)


def stored(rt: Runtime, topic: str) -> bool:
    return any(s.root == f"request {topic}" for s in rt.span_store.traces(limit=100))


async def test_one_process_stores_the_spans_and_another_takes_over_when_it_ends(
    nats_server: LocalCluster, project: Path
) -> None:
    config = project / "loom.toml"
    config.write_text(nats_toml(nats_server.urls, "lost_after = 0.2\n"))
    first = await open_runtime(config)  # first on the bus: it takes the lock
    async with open_runtime(config) as other:
        try:
            assert first.connection.embedded and not other.connection.embedded
            assert first.span_collector is not None and other.span_collector is None
            assert not first.embedded  # no broker: NATS is the broker
            await other.start(Answerer("answerer"))
            assert (await first.request("ask.one", 1, timeout=5)).data == 2
            await wait_until(lambda: stored(first, "ask.one"), timeout=10)
        finally:
            await first.aclose()
        await wait_until(lambda: other.span_collector is not None, timeout=10)
        assert other.connection.takeovers == 1
        assert (await other.request("ask.two", 2, timeout=5)).data == 3
        await wait_until(lambda: stored(other, "ask.two"), timeout=10)


async def test_a_command_that_only_looks_stores_nothing(
    nats_server: LocalCluster, project: Path
) -> None:
    config = project / "loom.toml"
    config.write_text(nats_toml(nats_server.urls, 'mode = "connect"\n'))
    async with open_runtime(config) as looking:
        assert not looking.connection.embedded
        assert looking.connection.takeovers == 0
