"""The event log's file: recording, indexes, queries, retention, bad input."""

from __future__ import annotations

import sqlite3
import time
from datetime import timedelta
from pathlib import Path

import pytest

from loom_kernel import Envelope, LoomError, TopicError
from loom_kernel.durability import EventLog
from loom_kernel.durability.wire import ACK_HEADER, Position, Range
from loom_kernel.protocol.envelope import encode_data, new_id

SECOND = 1_000_000_000


def event(topic: str, seq: int, *, source: str = "pub", ts: int | None = None, **extra) -> Envelope:
    payload, content_type = encode_data({"seq": seq})
    return Envelope(
        topic=topic,
        source=source,
        id=new_id(),
        seq=seq,
        ts=time.time_ns() if ts is None else ts,
        payload=payload,
        content_type=content_type,
        **extra,
    )


@pytest.fixture
def log(tmp_path: Path):
    store = EventLog(tmp_path / "events.db")
    yield store
    store.close()


def test_events_come_back_in_log_order_with_their_data(log: EventLog) -> None:
    log.append([event("orders.new", i) for i in range(1, 6)])
    found = log.query()
    assert [item.event.data for item in found] == [{"seq": i} for i in range(1, 6)]
    assert [item.pos for item in found] == sorted(item.pos for item in found)
    assert found[0].event.source == "pub" and found[0].event.topic == "orders.new"


def test_an_event_sent_again_late_is_found_though_older_than_the_events_before_it(
    log: EventLog,
) -> None:
    now = time.time_ns()
    log.append([event("probe.x", 1, source="other", ts=now)])
    log.append([event("orders.new", i, ts=now - (10 - i) * SECOND) for i in range(1, 4)])
    assert [item.event.topic for item in log.query()] == ["probe.x"] + ["orders.new"] * 3
    window = log.query(since=(now - 8.5 * SECOND) / 1e9, until=(now - 6.5 * SECOND) / 1e9)
    assert [item.event.seq for item in window] == [2, 3]


def test_file_is_wal_and_indexed_by_time_topic_and_source_seq(log: EventLog) -> None:
    log.append([event("a.b", 1)])
    db = sqlite3.connect(log.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {
        row[1]: row[2] for row in db.execute("SELECT * FROM sqlite_master") if row[0] == "index"
    }
    assert {"events_ts", "events_stream", "streams_topic"} <= set(indexes)
    assert indexes["events_ts"] == "events" and indexes["streams_topic"] == "streams"
    db.close()


def test_an_event_stored_twice_is_kept_once(log: EventLog) -> None:
    first = event("orders.new", 1)
    log.append([first, event("orders.new", 2)])
    log.append([first])  # a publisher sending it again after a lost ack
    assert [item.event.seq for item in log.query()] == [1, 2]


def test_query_filters_by_topic_patterns(log: EventLog) -> None:
    log.append([event("orders.new", 1), event("prices.btc", 1), event("orders.paid", 1)])
    topics = [item.event.topic for item in log.query(topics=["orders.*"])]
    assert topics == ["orders.new", "orders.paid"]
    assert [i.event.topic for i in log.query(topics=["prices.btc"])] == ["prices.btc"]


def test_query_filters_by_time(log: EventLog) -> None:
    now = time.time_ns()
    log.append([event("t.x", i, ts=now + (i - 10) * SECOND) for i in range(1, 11)])
    middle = log.query(since=(now - 6.5 * SECOND) / 1e9, until=(now - 2.5 * SECOND) / 1e9)
    assert [item.event.seq for item in middle] == [4, 5, 6, 7]
    assert [item.event.seq for item in log.query(since=timedelta(seconds=1.5))] == [9, 10]


def test_query_pages_with_after_pos(log: EventLog) -> None:
    log.append([event("p.q", i) for i in range(1, 8)])
    first = log.query(limit=3)
    rest = log.query(after_pos=first[-1].pos, limit=100)
    assert [i.event.seq for i in first + rest] == list(range(1, 8))


def test_bad_query_input_is_refused_with_the_fix(log: EventLog) -> None:
    with pytest.raises(LoomError, match="positive int"):
        log.query(limit=0)
    with pytest.raises(LoomError, match="epoch seconds"):
        log.query(since="yesterday")
    with pytest.raises(TopicError):
        log.query(topics=["bad..topic"])


def test_purge_drops_events_older_than_the_retention(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "e.db", retention_hours=1.0)
    now = time.time_ns()
    old = [event("r.s", i, ts=now - 2 * 3600 * SECOND) for i in range(1, 4)]
    log.append([*old, event("r.s", 4, ts=now)])
    assert log.purge() == 3
    assert [item.event.seq for item in log.query()] == [4]
    log.close()


def test_purge_keeps_the_file_under_its_size_limit(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "e.db", max_size_mb=1.0)
    big, content_type = encode_data({"blob": "x" * 2000})
    for batch in range(10):
        log.append(
            [
                Envelope(
                    topic="big.one",
                    source="p",
                    id=new_id(),
                    seq=batch * 100 + i + 1,
                    ts=time.time_ns(),
                    payload=big,
                    content_type=content_type,
                )
                for i in range(100)
            ]
        )
    assert log.statistics().bytes > 1024 * 1024
    assert log.purge() > 0
    stats = log.statistics()
    assert stats.bytes <= 1024 * 1024
    assert log.query(limit=1)[0].event.seq > 1  # the oldest went first
    log.close()


def test_reliable_events_are_acknowledged_to_their_client(log: EventLog) -> None:
    acks = log.append(
        [event("o.n", seq, headers={ACK_HEADER: "client-1"}) for seq in (1, 2, 3, 5)]
        + [event("o.n", 1, source="other")]
    )
    assert len(acks) == 1
    client, ack = acks[0]
    assert client == "client-1"
    ranges = [(first, last) for _, _, _, first, last in ack.ranges]
    assert ranges == [(1, 3), (5, 5)]


def test_a_cursor_resumes_past_what_it_committed(log: EventLog) -> None:
    from loom_kernel.durability.wire import Commit

    created = log.resume("sink:o.*", "o.*")
    assert created.created and created.ranges == []
    events = [event("o.n", i) for i in range(1, 11)]
    log.append(events)
    epoch = events[0].id[:12]
    log.append([], [Commit("sink:o.*", "o.*", [Position("pub", "o.n", epoch, 4)])])
    resumed = log.resume("sink:o.*", "o.*")
    assert not resumed.created
    assert [(r.topic, r.after) for r in resumed.ranges] == [("o.n", 4)]
    fetched = log.fetch(resumed.ranges)
    assert [r.pos for r in fetched.events] == sorted(r.pos for r in fetched.events)
    assert len(fetched.events) == 6 and not fetched.more
    page = log.fetch([Range("pub", "o.n", epoch, 4)], limit=2)
    assert len(page.events) == 2 and page.more


def test_an_unwritable_path_says_which_setting_to_change(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(LoomError, match=r"\[eventlog\] path"):
        EventLog(blocker / "events.db").query()
