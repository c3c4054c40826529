"""The studio's tenant view: which events belong to one tenant (no browser: see
`test_tenant_browser.py` for the page)."""

from __future__ import annotations

import pytest

from loom_kernel import Envelope, LoomError
from loom_kernel.config import parse_config
from loom_studio.feed import StudioFeed
from loom_studio.tenant import TenantView

CONFIG = parse_config(
    {
        "bus": {"security": "curve"},
        "tenants": {"acme": {"identities": ["acme-1"]}, "globex": {"identities": ["globex-1"]}},
    }
)


def beat(agent: str, identity: str | None, process: str) -> Envelope:
    data: dict[str, object] = {"agent_id": agent, "status": "running", "process": process}
    if identity is not None:
        data["identity"] = identity
    return Envelope(topic=f"loom.agent.{agent}.heartbeat", type="heartbeat", data=data)


def test_the_view_admits_the_tenants_namespace_agents_and_processes() -> None:
    view = TenantView.of(CONFIG, "acme")
    assert view.admits(beat("desk", "acme-1", "rt-a"))
    assert not view.admits(beat("other", "globex-1", "rt-g"))
    assert view.agents == {"desk"} and view.processes == {"rt-a"}
    assert view.admits(beat("desk", None, "rt-a"))  # a stalled beat from the watchdog
    admitted = {
        "acme.orders.new": True,
        "acme": True,
        "acmeX.orders": False,
        "globex.orders.new": False,
        "loom.agent.desk.error": True,
        "loom.agent.other.error": False,
        "loom.log.desk": True,
        "loom.client.rt-a.stats": True,
        "loom.client.rt-g.stats": False,
        "loom.trace.spans.rt-a": True,
        "loom.trace.spans.rt-g": False,
        "loom.broker.stats": True,
        "loom.eventlog.stats": False,
    }
    for topic, expected in admitted.items():
        assert view.admits(Envelope(topic=topic, data={})) == expected, topic
    assert view.admits(Envelope(topic="loom.tools.changed", data={"process": "rt-a"}))
    assert not view.admits(Envelope(topic="loom.tools.changed", data={"process": "rt-g"}))


def test_a_feed_with_a_tenant_keeps_only_its_part() -> None:
    feed = StudioFeed(tenant=TenantView.of(CONFIG, "acme"))
    for event in (
        beat("desk", "acme-1", "rt-a"),
        beat("other", "globex-1", "rt-g"),
        Envelope(topic="acme.orders.new", source="desk", data={"qty": 1}),
        Envelope(topic="globex.orders.new", source="other", data={"qty": 2}),
    ):
        feed.ingest(event)
    assert set(feed.agents) == {"desk"}
    assert [row.topic for row in feed.events] == ["acme.orders.new"]


def test_an_unknown_tenant_is_refused_with_the_known_ones() -> None:
    with pytest.raises(LoomError, match=r"no tenant 'initech' .* \(tenants: acme, globex\)"):
        TenantView.of(CONFIG, "initech")
