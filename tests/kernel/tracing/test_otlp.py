"""Export to an OTLP backend: resource and headers from loom.toml, and a slow backend
that cannot make the queue grow without bound or lose spans silently."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import Resource

from loom_kernel import ConfigError, Envelope, Runtime, open_runtime
from loom_kernel.config import parse_config
from loom_kernel.protocol import Span
from loom_kernel.tracing.otel import to_readable
from loom_kernel.tracing.otlp import OTLPExport
from tests.conftest import wait_until
from tests.support.otlp_receiver import OTLPReceiver

pytestmark = pytest.mark.timeout(60)


def spans(count: int) -> list[Span]:
    return [
        Span("a" * 32, f"{n + 1:016x}", None, f"s{n}", "internal", 1, 2, service="loom:test")
        for n in range(count)
    ]


async def open_with(folder: Path, **tracing: object) -> Runtime:
    config = parse_config(
        {"runtime": {"heartbeat_interval": 0.2}, "tracing": tracing}, path=folder / "loom.toml"
    )
    return await open_runtime(config)


def test_a_backend_slower_than_the_span_rate_gets_a_bounded_queue_and_counted_drops() -> None:
    resource = Resource.create({"service.name": "loom:test"})
    with OTLPReceiver(delay=0.3) as slow:
        export = OTLPExport(slow.endpoint, lambda s: to_readable(s, resource), max_queue=600)
        sent = spans(5000)
        for start in range(0, len(sent), 250):  # bursts, faster than one request per 0.3 s
            export.submit(sent[start : start + 250])
            assert export.statistics().queued <= 600  # bounded, whatever the rate
        before = export.statistics()
        export.shutdown(timeout=5)
        after = export.statistics()
    assert before.dropped > 0
    assert after.exported + after.dropped + after.failed == len(sent)  # every span accounted
    assert after.exported == len(slow.spans) > 0
    assert after.queued == 0


def test_a_backend_that_is_down_counts_failures_and_does_not_stop_the_exporter() -> None:
    resource = Resource.create({"service.name": "loom:test"})
    export = OTLPExport(
        "http://127.0.0.1:9", lambda s: to_readable(s, resource), max_queue=1000, timeout=0.5
    )
    export.submit(spans(10))
    export.shutdown(timeout=10)
    stats = export.statistics()
    assert stats.exported == 0 and stats.failed + stats.dropped == 10


async def test_service_project_resource_and_headers_come_from_loom_toml(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHOENIX_KEY", "s3cret")
    with OTLPReceiver() as receiver:
        rt = await open_with(
            project,
            otlp_endpoint=receiver.endpoint,
            service_name="market-analyst",
            project="market-analyst-dev",
            resource_attributes={"deployment.environment": "test"},
            otlp_headers={"Authorization": "Bearer ${PHOENIX_KEY}"},
        )
        try:
            await rt.emit("resource.check", 1)
            await wait_until(lambda: receiver.named("publish resource.check"), 10)
        finally:
            await rt.aclose()
    (span,) = receiver.named("publish resource.check")
    assert span["service_name"] == "market-analyst"
    assert span["resource"]["openinference.project.name"] == "market-analyst-dev"
    assert span["resource"]["deployment.environment"] == "test"
    assert {h.get("authorization") for h in receiver.headers} == {"Bearer s3cret"}


async def test_a_header_naming_an_unset_variable_says_what_to_export(project: Path) -> None:
    with pytest.raises(ConfigError, match=r"otlp_headers 'Authorization' uses \$\{NOT_SET_XYZ\}"):
        await open_with(
            project,
            otlp_endpoint="http://127.0.0.1:9",
            otlp_headers={"Authorization": "Bearer ${NOT_SET_XYZ}"},
        )


async def test_drops_toward_a_slow_backend_are_reported_on_the_bus(project: Path) -> None:
    with OTLPReceiver(delay=0.5) as slow:
        rt = await open_with(project, otlp_endpoint=slow.endpoint, otlp_queue_size=100)
        try:
            reports = await rt.subscribe("loom.client.*")
            for n in range(3000):  # publish spans far faster than the backend takes them
                rt.context.endpoint.send(Envelope(topic="fast.tick", data=n))
                if n % 500 == 499:
                    await asyncio.sleep(0.01)
            while True:
                report = await reports.get(timeout=10)
                otlp = (report.data.get("tracing") or {}).get("otlp") or {}
                if otlp.get("dropped", 0) > 0:
                    break
            assert otlp["endpoint"] == f"{slow.endpoint}/v1/traces"
            assert rt.tracing.statistics().otlp["dropped"] > 0
        finally:
            await rt.aclose()
