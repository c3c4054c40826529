"""``sdk/js/examples/analysis-watcher.mjs``, the Node agent of the Market Analyst, run as a
user runs it (``node sdk/js/examples/analysis-watcher.mjs`` with ``LOOM_CONFIG`` naming the
project) against Python agents publishing the demo's analyses."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

from loom_kernel import Runtime
from tests.conftest import REPO, WAIT

pytestmark = pytest.mark.node

EXAMPLE = REPO / "sdk" / "js" / "examples" / "analysis-watcher.mjs"
TREND = {"symbol": "AAPL", "signal": "bullish", "strength": 0.8, "ready": True}
SENTIMENT = {"symbol": "AAPL", "score": 0.6, "label": "positive"}
RISK = {"symbol": "AAPL", "allowed": True}


async def test_the_watcher_joins_reacts_to_analyses_and_serves_its_tool(
    rt: Runtime, project: Path
) -> None:
    if not (REPO / "sdk" / "js" / "dist" / "index.js").is_file():
        pytest.fail("the JavaScript SDK is not built: run `make sdk-js`")
    alerts = await rt.subscribe("alerts.consensus.*")
    beats = await rt.subscribe("loom.agent.js-watcher.heartbeat")
    env = {**os.environ, "LOOM_CONFIG": str(project / "loom.toml")}
    proc = await asyncio.create_subprocess_exec(
        shutil.which("node") or "node", str(EXAMPLE), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        beat = (await beats.get(timeout=WAIT * 3)).data  # it is live once it beats
        assert (beat["status"], beat["patterns"]) == (
            "running",
            ["analysis.*", "loom.tool.watcher.summary"],
        )
        await rt.emit("analysis.trend.AAPL", TREND)
        await rt.emit("analysis.risk.AAPL", RISK)
        await rt.emit("analysis.sentiment.AAPL", SENTIMENT)
        alert = (await alerts.get(timeout=WAIT)).data
        assert alert == {
            "symbol": "AAPL",
            "consensus": "long",
            "trend": "bullish",
            "strength": 0.8,
            "sentiment": 0.6,
        }
        summary = await rt.tool("watcher.summary", {"symbol": "AAPL"})
        assert summary == [
            {
                "symbol": "AAPL",
                "trend": "bullish",
                "sentiment": "positive",
                "risk_allowed": True,
                "consensus": "long",
            }
        ]
    finally:
        proc.send_signal(2)  # Ctrl-C: it closes cleanly
        _, stderr = await asyncio.wait_for(proc.communicate(), WAIT)
    assert proc.returncode == 0, stderr.decode()
