"""`loom bench` runs for real (small counts) and prints the documented JSON shape."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import PYTHON, python_env

pytestmark = pytest.mark.multiprocess


def bench(project: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``loom bench ARGS`` in the project, as a user runs it; it must succeed."""
    result = subprocess.run(
        [PYTHON, "-m", "loom_kernel.cli.app", "bench", *args],
        cwd=project, env=python_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result


def test_bench_json_has_the_documented_shape(project: Path) -> None:
    result = bench(project, "--json", "--quick", "--count", "20000", "--duration", "0.5")
    report = json.loads(result.stdout)
    throughput = report["throughput"]
    assert throughput["raw_pyzmq_eps"] > 0 and throughput["loom_eps"] > 0
    assert throughput["ratio"] == pytest.approx(
        throughput["loom_eps"] / throughput["raw_pyzmq_eps"], rel=0.01
    )
    assert throughput["loom_received"] == 20000
    # the in-process and fan-out shapes, beside the same baseline
    assert throughput["inprocess_received"] == 20000 and throughput["inprocess_eps"] > 0
    assert throughput["inprocess_ratio"] == pytest.approx(
        throughput["inprocess_eps"] / throughput["raw_pyzmq_eps"], rel=0.01
    )
    assert throughput["fanout_agents"] == 8 and throughput["fanout_received_min"] == 20000
    assert 0 < throughput["fanout_slowest_agent_eps"] <= throughput["fanout_deliveries_eps"]
    rates = [row["rate_eps"] for row in report["latency"]]
    assert rates == [1000, 10000]
    for row in report["latency"]:
        assert set(row) >= {"rate_eps", "p50_ms", "p99_ms", "max_ms", "sent", "received"}
        assert row["received"] == row["sent"] == int(row["rate_eps"] * 0.5)
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["max_ms"]


def test_bench_table_output(project: Path) -> None:
    result = bench(project, "--count", "5000", "--duration", "0.2")
    assert "Throughput" in result.stdout and "p99 ms" in result.stdout
    assert "in process" in result.stdout and "fan-out" in result.stdout


def test_bench_tools_reports_agent_and_mcp_round_trips(project: Path) -> None:
    result = bench(project, "--tools", "--calls", "50", "--json")
    report = json.loads(result.stdout)
    agent = report["agent_tool"]
    assert agent["calls"] == 50
    assert 0 < agent["p50_ms"] <= agent["p99_ms"]
    mcp = report["mcp_stdio"]
    assert mcp["direct"]["calls"] == mcp["loom"]["calls"] == 50
    assert mcp["ratio_p50"] == pytest.approx(
        mcp["loom"]["p50_ms"] / mcp["direct"]["p50_ms"], rel=0.01
    )


def test_bench_security_measures_a_curve_bus_beside_a_plain_one(project: Path) -> None:
    result = bench(project, "--security", "--count", "3000", "--json", timeout=180)
    report = json.loads(result.stdout)
    assert report["plain_received"] == report["curve_received"] == report["count"] == 3000
    assert report["ratio"] == pytest.approx(report["curve_eps"] / report["plain_eps"], abs=0.001)


def test_bench_nats_measures_both_backends_and_a_leader_kill(project: Path) -> None:
    result = bench(
        project, "--backend", "nats", "--quick", "--count", "4000", "--duration", "0.5",
        "--json", timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    t = report["throughput"]
    assert t["received"] == {"nats": 4000, "zeromq": 4000}
    assert t["raw_nats_py_eps"] > 0 and t["raw_pyzmq_eps"] > 0
    assert t["nats_ratio_to_raw"] > 0 and t["zeromq_ratio_to_raw"] > 0
    assert report["latency"]["nats"]["received"] == report["latency"]["nats"]["sent"]
    for run in ("reliable", "leader_killed"):
        assert report[run]["lost"] == 0 and report[run]["twice"] == 0, report[run]
    assert report["leader_killed"]["killed"] in ("n0", "n1", "n2")
