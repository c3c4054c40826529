"""The broker's guard, message by message (no sockets: `test_guarded_bus.py` has them)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loom_kernel.config import AclConfig, TenantConfig, parse_config
from loom_kernel.errors import ConfigError
from loom_kernel.security.guard import EXPECT_SEC, Guard

INBOX = "loom.reply.rt-alice.asker"


def frames(topic: str, **header: object) -> list[bytes]:
    fields = {"v": 1, "id": f"id-{topic}-{header.get('source', '')}", **header}
    return [topic.encode(), json.dumps(fields).encode(), b""]


def batch(topic: str, *headers: dict[str, object]) -> list[bytes]:
    heads = [{"v": 1, "id": f"b{n}", **header} for n, header in enumerate(headers)]
    return [topic.encode(), b'{"v":1,"sizes":[]}', json.dumps(heads).encode(), b""]


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def guard() -> Guard:
    return Guard(host="loom")


# -- names -------------------------------------------------------------------------


def test_a_name_belongs_to_the_identity_that_used_it_first(guard: Guard) -> None:
    assert guard.publish("alice", frames("orders.new", source="trader")) is None
    assert guard.publish("alice", frames("orders.new", source="trader")) is None
    denial = guard.publish("mallory", frames("orders.new", source="trader"))
    assert denial is not None and denial.action == "impersonate"
    assert "'trader' belongs to identity 'alice', not 'mallory'" in denial.reason
    assert guard.names() == {"trader": "alice"}
    assert guard.denied["impersonate"] == 1


@pytest.mark.parametrize(
    "topic",
    [
        "loom.agent.trader.heartbeat",
        "loom.agent.trader.error",
        "loom.log.trader",
        "loom.client.trader.stats",
        "loom.trace.spans.trader",
        "loom.probe.trader.1",
    ],
)
def test_a_topic_that_names_a_publisher_is_its_own(guard: Guard, topic: str) -> None:
    guard.publish("alice", frames("orders.new", source="trader"))
    denial = guard.publish("mallory", frames(topic, source="mallory-1"))
    assert denial is not None and "'trader' belongs to identity 'alice'" in denial.reason


def test_one_forged_event_in_a_batch_refuses_the_batch(guard: Guard) -> None:
    guard.publish("alice", frames("orders.new", source="trader"))
    ok = batch("orders.new", {"source": "mallory"}, {"source": "mallory"})
    forged = batch("orders.new", {"source": "mallory"}, {"source": "trader"})
    assert guard.publish("mallory", ok) is None
    assert guard.publish("mallory", forged) is not None


def test_acl_agents_reserve_names_before_anyone_uses_them() -> None:
    guard = Guard({"alice": AclConfig(agents=["trade*", "risk"])}, host="loom")
    assert guard.publish("mallory", frames("x", source="trader")) is not None
    assert guard.publish("mallory", frames("x", source="risk")) is not None
    assert guard.publish("alice", frames("x", source="trader")) is None
    assert guard.publish("mallory", frames("x", source="riskier")) is None


def test_replays_keep_their_recorded_source(guard: Guard) -> None:
    guard.publish("alice", frames("orders.new", source="trader"))
    assert guard.publish("loom", frames("replay.r1.orders.new", source="trader")) is None


def test_messages_that_are_no_loom_events_are_refused(guard: Guard) -> None:
    assert guard.publish("alice", [b"a", b"b"]).action == "malformed"  # type: ignore[union-attr]
    assert guard.publish("alice", [b"topic", b"{not json", b""]).action == "malformed"  # type: ignore[union-attr]
    assert guard.publish("alice", [b"topic", b'{"v":1,"sizes":[]}', b"[]", b""]) is not None


# -- replies -----------------------------------------------------------------------


def _request(guard: Guard, **extra: object) -> None:
    guard.subscribe("alice", b"loom.reply.rt-alice.")
    guard.subscribe("bob", b"secret.read")
    request = frames(
        "secret.read", source="asker", type="request", correlation_id="c1", reply_to=INBOX, **extra
    )
    assert guard.publish("alice", request) is None


def test_a_reply_comes_only_from_an_identity_the_request_reached(guard: Guard) -> None:
    _request(guard)
    forged = frames(INBOX, source="mallory", type="reply", correlation_id="c1")
    denial = guard.publish("mallory", forged)
    assert denial is not None and denial.action == "reply"
    assert "delivered to bob, not to 'mallory'" in denial.reason
    assert (
        guard.publish("bob", frames(INBOX, source="server", type="reply", correlation_id="c1"))
        is None
    )


def test_a_reply_to_a_request_the_bus_never_carried_is_refused(guard: Guard) -> None:
    guard.subscribe("alice", b"loom.reply.rt-alice.")
    denial = guard.publish("mallory", frames(INBOX, source="m", type="error", correlation_id="zz"))
    assert denial is not None and "the bus did not carry" in denial.reason


def test_an_identity_may_always_answer_into_its_own_inbox(guard: Guard) -> None:
    guard.subscribe("alice", b"loom.reply.rt-alice.")
    assert (
        guard.publish("alice", frames(INBOX, source="a", type="reply", correlation_id="x")) is None
    )


def test_expected_replies_expire() -> None:
    clock = Clock()
    guard = Guard(host="loom", clock=clock)
    _request(guard)
    clock.now = EXPECT_SEC + 1
    guard.publish("alice", frames("other.topic", source="asker", reply_to=INBOX, type="request"))
    late = frames(INBOX, source="server", type="reply", correlation_id="c1")
    assert guard.publish("bob", late) is not None


def test_a_short_ttl_shortens_the_wait_for_replies() -> None:
    clock = Clock()
    guard = Guard(host="loom", clock=clock)
    _request(guard, ttl_ms=2000)
    clock.now = 3
    guard.publish("alice", frames("other.topic", source="asker", reply_to=INBOX, type="request"))
    assert guard.publish("bob", frames(INBOX, source="s", type="reply", correlation_id="c1"))


def test_only_the_inbox_owner_subscribes_to_its_inbox(guard: Guard) -> None:
    assert guard.subscribe("alice", b"loom.reply.rt-alice.") is None
    denial = guard.subscribe("mallory", b"loom.reply.rt-alice.")
    assert denial is not None and denial.action == "subscribe"
    assert guard.subscribe("mallory", b"loom.probe.rt-alice.3") is not None


def test_an_unsubscribed_identity_no_longer_answers(guard: Guard) -> None:
    guard.subscribe("bob", b"secret.read")
    guard.unsubscribed("bob", b"secret.read")
    guard.subscribe("alice", b"loom.reply.rt-alice.")
    request = frames("secret.read", source="asker", type="request", id="c2", reply_to=INBOX)
    guard.publish("alice", request)
    assert guard.publish("bob", frames(INBOX, source="s", type="reply", correlation_id="c2"))


# -- ACLs --------------------------------------------------------------------------

ACL = {
    "analyst": AclConfig(
        publish=["analysis.*"],
        subscribe=["market.price.*", "loom.tool.quote"],
        tools=["quote", "news.*"],
    )
}


@pytest.mark.parametrize(
    ("identity", "topic", "allowed"),
    [
        ("analyst", "analysis.trend.AAPL", True),
        ("analyst", "orders.new", False),
        ("analyst", "loom.tool.quote", True),
        ("analyst", "loom.tool.news.search", True),
        ("analyst", "loom.tool.broker.order", False),
        ("analyst", "loom.supervisor.control", False),
        ("analyst", "loom.code.reload", False),
        ("analyst", "loom.bus.beat", False),
        ("analyst", "loom.tools.query", True),  # Loom's plumbing: fixed rules
        ("analyst", "loom.agent.analyst.heartbeat", True),
        ("loom", "loom.supervisor.control", True),  # the host is the default operator
        ("loom", "loom.bus.beat", True),
        ("other", "orders.new", True),  # no [acl.other]: unrestricted
        ("other", "loom.supervisor.logs", False),
    ],
)
def test_publish_allow_and_deny(identity: str, topic: str, allowed: bool) -> None:
    guard = Guard(ACL, host="loom")
    denial = guard.publish(identity, frames(topic, source=f"{identity}-agent"))
    assert (denial is None) == allowed, denial


@pytest.mark.parametrize(
    ("prefix", "allowed"),
    [
        (b"market.price.", True),
        (b"market.price.AAPL", True),
        (b"market.", False),
        (b"", False),
        (b"loom.tool.quote", True),
        (b"loom.tool.", False),
        (b"loom.bus.beat", True),
        (b"loom.tools.query", True),
        (b"loom.reply.rt-analyst.", True),
        (b"orders.", False),
    ],
)
def test_subscribe_allow_and_deny(prefix: bytes, allowed: bool) -> None:
    guard = Guard(ACL, host="loom")
    denial = guard.subscribe("analyst", prefix)
    assert (denial is None) == allowed, denial
    if denial is not None:
        assert "[acl.analyst] subscribe does not cover" in denial.reason


def test_operators_and_acls_that_name_control_topics_may_stop_agents() -> None:
    guard = Guard(
        {"ops": AclConfig(publish=["loom.supervisor.*"])}, host="loom", operators=["admin"]
    )
    control = frames("loom.supervisor.control", source="x", type="request")
    assert guard.publish("admin", control) is None
    assert guard.publish("ops", frames("loom.supervisor.control", source="y")) is None
    denial = guard.publish("loom", frames("loom.supervisor.control", source="z"))
    assert denial is not None and "only operators (admin)" in denial.reason


def test_a_bad_acl_pattern_names_its_section() -> None:
    with pytest.raises(ConfigError, match=r"\[acl.alice\]: .*empty segment"):
        Guard({"alice": AclConfig(publish=["a..b"])}, host="loom")


def test_acls_need_a_curve_bus_and_subscribe_wildcards_at_the_end() -> None:
    with pytest.raises(ConfigError, match='needs \\[bus\\] security = "curve"'):
        parse_config({"acl": {"alice": {"publish": ["x"]}}})
    with pytest.raises(ConfigError, match="a wildcard may only end a pattern"):
        parse_config({"bus": {"security": "curve"}, "acl": {"a": {"subscribe": ["m.*.x"]}}})
    config = parse_config({"bus": {"security": "curve"}, "acl": {"a": {"subscribe": ["m.*"]}}})
    assert config.acl["a"].subscribe == ["m.*"]


# -- tenants -----------------------------------------------------------------------

TENANTS = {
    "acme": TenantConfig(identities=["acme-1"]),
    "globex": TenantConfig(prefix="org.globex", identities=["globex-1"]),
}


def tenant_guard(acl: dict[str, AclConfig] | None = None) -> Guard:
    return Guard(acl, tenants=TENANTS, host="loom")


@pytest.mark.parametrize(
    ("identity", "topic", "allowed"),
    [
        ("acme-1", "acme.orders.new", True),
        ("acme-1", "org.globex.orders.new", False),
        ("acme-1", "orders.new", False),
        ("acme-1", "loom.tool.acme.quote", True),
        ("acme-1", "loom.tool.org.globex.quote", False),
        ("acme-1", "loom.barrier.acme.ready", True),
        ("acme-1", "loom.barrier.ready", False),
        ("acme-1", "loom.agent.acme-trend.heartbeat", True),
        ("globex-1", "org.globex.x", True),
        ("globex-1", "acme.x", False),
        ("loom", "acme.orders.new", True),  # no tenant: the shared infrastructure
    ],
)
def test_a_tenant_publishes_in_its_namespace(identity: str, topic: str, allowed: bool) -> None:
    denial = tenant_guard().publish(identity, frames(topic, source=f"{identity}-a"))
    assert (denial is None) == allowed, denial
    if denial is not None and not topic.startswith("loom.barrier"):
        assert "tenant" in denial.reason


@pytest.mark.parametrize(
    ("prefix", "allowed"),
    [
        (b"acme.", True),
        (b"acme.orders.", True),
        (b"org.globex.", False),
        (b"", False),
        (b"loom.tool.acme.quote", True),
        (b"loom.tool.", False),
        (b"loom.agent.", False),
        (b"loom.tools.query", True),
        (b"loom.tools.changed", False),  # would show other tenants' tools
        (b"loom.barrier.acme.", True),
    ],
)
def test_a_tenant_subscribes_in_its_namespace(prefix: bytes, allowed: bool) -> None:
    assert (tenant_guard().subscribe("acme-1", prefix) is None) == allowed


def test_replies_do_not_cross_tenants() -> None:
    guard = tenant_guard()
    inbox = "loom.reply.rt-acme.asker"
    for identity in ("acme-1", "globex-1", "loom"):
        guard.subscribe(identity, b"loom.tools.query")
    guard.subscribe("acme-1", b"loom.reply.rt-acme.")
    query = frames("loom.tools.query", source="acme-asker", type="request", id="q", reply_to=inbox)
    assert guard.publish("acme-1", query) is None
    answer = frames(inbox, source="s1", type="reply", correlation_id="q")
    assert guard.publish("loom", answer) is None  # no tenant: answers anyone
    denial = guard.publish("globex-1", frames(inbox, source="g", type="reply", correlation_id="q"))
    assert denial is not None and "not to 'globex-1'" in denial.reason
    assert "globex-1" not in denial.reason.split("not to")[0]  # it was never a candidate


def test_an_acl_lets_a_request_cross_and_its_reply_come_back() -> None:
    guard = tenant_guard({"acme-1": AclConfig(tools=["org.globex.quote"])})
    inbox = "loom.reply.rt-acme.asker"
    guard.subscribe("acme-1", b"loom.reply.rt-acme.")
    guard.subscribe("globex-1", b"loom.tool.org.globex.quote")
    call = frames(
        "loom.tool.org.globex.quote", source="acme-a", type="request", id="t", reply_to=inbox
    )
    assert guard.publish("acme-1", call) is None
    assert (
        guard.publish("globex-1", frames(inbox, source="g", type="reply", correlation_id="t"))
        is None
    )


def test_a_heartbeat_names_only_its_senders_identity(guard: Guard) -> None:
    topic = "loom.agent.trend.heartbeat"
    honest = [topic.encode(), b'{"v":1,"id":"h1","source":"trend"}', b'{"identity":"alice"}']
    assert guard.publish("alice", honest) is None
    lying = [topic.encode(), b'{"v":1,"id":"h2","source":"trend"}', b'{"identity":"bob"}']
    denial = guard.publish("alice", lying)
    assert denial is not None and "naming identity bob, sent by 'alice'" in denial.reason
    batch_frames = [
        topic.encode(),
        b'{"v":1,"sizes":[20,18]}',
        b'[{"v":1,"id":"a","source":"trend"},{"v":1,"id":"b","source":"trend"}]',
        b'{"identity":"alice"}{"identity":"bob"}',
    ]
    assert guard.publish("alice", batch_frames) is not None
    assert guard.publish("alice", [topic.encode(), honest[1], b"{}"]) is None  # plain bus beat


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.binary(max_size=64), min_size=0, max_size=5),
    st.sampled_from(["alice", "mallory", "loom"]),
)
def test_no_message_makes_the_guard_raise(frames: list[bytes], identity: str) -> None:
    guard = Guard(ACL, tenants={"acme": TenantConfig(identities=["mallory"])}, host="loom")
    guard.publish(identity, frames)  # a verdict, never an exception
    if frames:
        guard.subscribe(identity, frames[0])
        guard.unsubscribed(identity, frames[0])


@settings(max_examples=200, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "source": st.text(max_size=8),
            "type": st.sampled_from(["event", "request", "reply", "error", "bid"]),
            "reply_to": st.text(max_size=30),
            "correlation_id": st.text(max_size=8),
            "ttl_ms": st.integers(min_value=0, max_value=10**6),
        },
    ),
    st.sampled_from(["orders.new", "loom.reply.rt-a.x", "loom.agent.t.heartbeat", "replay.r.x"]),
)
def test_well_formed_headers_of_any_content_get_a_verdict(
    header: dict[str, object], topic: str
) -> None:
    guard = Guard(ACL, host="loom")
    guard.publish("alice", frames(topic, **header))
    guard.publish("mallory", frames(topic, **header))
