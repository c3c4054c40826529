"""The dispatcher's batch path is the per-event path, once per batch (issue 24).

``deliver_many`` routes a received batch (one topic) with the route looked up and each
mailbox filled once; whatever the batch holds (several sources, sequence gaps, expired
events, a full mailbox), the mailboxes and counters must end as ``deliver`` leaves them
for the same events one by one.
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from loom_kernel.bus.dispatch import Dispatcher
from loom_kernel.bus.qos import Mailbox, make_mailbox
from loom_kernel.bus.transport import Subscription
from loom_kernel.protocol.envelope import Envelope
from loom_kernel.protocol.topics import compile_pattern

TOPIC = "market.price.BTC"
OLD = time.time_ns() - 60_000_000_000  # a minute ago: a 1 s TTL has run out


def dispatcher(qos: str = "reliable", maxsize: int = 1_000) -> Dispatcher:
    """A dispatcher with two matching subscriptions and one that does not match."""
    out = Dispatcher("loom.reply.me.")
    for pattern in ("market.price.*", "market.*", "news.*"):
        mailbox = make_mailbox(qos, maxsize=maxsize)
        out.add(Subscription(None, compile_pattern(pattern), mailbox, "agent"))  # type: ignore[arg-type]
    return out


def outcome(d: Dispatcher) -> tuple[Any, ...]:
    boxes = [([e.id for e in s.mailbox._items], s.mailbox.statistics()) for s in d.subscriptions]
    counters = (d.received, d.delivered, d.lost, d.gaps, d.expired, dict(d._last_seq))
    return counters, boxes


event_specs = st.lists(
    st.tuples(
        st.sampled_from(["feed", "feed", "other"]),  # mostly one source, as a batch is
        st.integers(min_value=0, max_value=6),  # the step to the next seq (0: unsequenced)
        st.booleans(),  # expired
    ),
    min_size=1,
    max_size=40,
)


def events_of(specs: list[tuple[str, int, bool]]) -> list[Envelope]:
    seqs: dict[str, int] = {}
    out = []
    for n, (source, step, expired) in enumerate(specs):
        seqs[source] = seqs.get(source, 0) + step
        out.append(
            Envelope(topic=TOPIC, id=f"e{n}", source=source, seq=seqs[source] if step else 0,
                     ts=OLD if expired else time.time_ns(), ttl_ms=1_000 if expired else 0)
        )  # fmt: skip
    return out


@settings(max_examples=200, deadline=None)
@given(first=event_specs, second=event_specs, qos=st.sampled_from(["reliable", "realtime"]))
def test_a_batch_ends_as_its_events_delivered_one_by_one(
    first: list[tuple[str, int, bool]], second: list[tuple[str, int, bool]], qos: str
) -> None:
    one_by_one, batched = dispatcher(qos, maxsize=25), dispatcher(qos, maxsize=25)
    for batch in (events_of(first), events_of(second)):  # the second continues the streams
        for env in batch:
            one_by_one.deliver(env)
        batched.deliver_many(batch)
    assert outcome(batched) == outcome(one_by_one)


def test_a_batch_of_replies_goes_to_the_reply_boxes() -> None:
    d = dispatcher()
    box = d.expect_replies("loom.reply.me.a1", "c1")
    d.deliver_many([Envelope(topic="loom.reply.me.a1", id="r1", correlation_id="c1")])
    assert [e.id for e in box.items] == ["r1"] and d.late == 0


def test_a_mailbox_with_its_own_put_nowait_gets_every_item_through_it() -> None:
    class Counting(Mailbox):
        def put_nowait(self, item: Any) -> None:
            super().put_nowait(("seen", item))

    box = Counting(10)
    box.put_many([1, 2])
    assert list(box._items) == [("seen", 1), ("seen", 2)]
