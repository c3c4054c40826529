"""The studio on a NATS bus (issue 25: the studio works unchanged on either backend): served
beside agents that run on a real nats-server, it lists them and their topics."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from loom_kernel import Agent, open_runtime
from loom_kernel.bus.nats.server import LocalCluster
from loom_studio.app import serve
from loom_studio.feed import StudioFeed
from tests.support.nats import nats_server, nats_toml

__all__ = ["nats_server"]
pytestmark = pytest.mark.timeout(90)


class Ticker(Agent):
    async def run(self, ctx: Any) -> None:
        n = 0
        while True:
            n += 1
            await ctx.emit("market.price.BTC", {"price": 61_000 + n})
            await asyncio.sleep(0.05)


def get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


async def test_the_studio_sees_the_agents_of_a_nats_bus(
    nats_server: LocalCluster, project: Path
) -> None:
    config = project / "loom.toml"
    config.write_text(nats_toml(nats_server.urls))
    async with open_runtime(config) as rt:
        await rt.start(Ticker("ticker"))
        feed = await StudioFeed().open(config)  # the studio's own runtime, on the bus
        server = serve(feed.runtime.config, port=0, feed=feed)
        try:
            url = f"http://127.0.0.1:{server.port}/api/live"
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            live: dict[str, Any] = {}
            while loop.time() < deadline:
                live = await asyncio.to_thread(get, url)
                ticker = [a for a in live["agents"] if a["id"] == "ticker"]
                if ticker and ticker[0]["rate"] > 0:
                    break
                await asyncio.sleep(0.3)
            assert any(a["id"] == "ticker" and a["rate"] > 0 for a in live["agents"]), live
            assert any(t["pattern"].startswith("market.") for t in live["topics"]), live["topics"]
            assert live["bus"] == {"address": nats_server.urls[0], "embedded": False}
        finally:
            server.stop()
            await feed.aclose()
