"""The dashboard's event stream: the newest events first, the filter, pause, and the
payload of the event clicked, on a real feed fed real envelopes."""

from __future__ import annotations

import pytest

from loom_studio.dashboard import Dashboard
from loom_studio.events import MAX_ROWS
from loom_studio.feed import StudioFeed
from tests.studio.wire import event

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def feed() -> StudioFeed:
    return StudioFeed()


def topics(dashboard: Dashboard) -> list[str]:
    return list(dashboard.events.table.value["topic"])


def test_new_events_come_first_once_each_with_their_columns(feed: StudioFeed) -> None:
    dashboard = Dashboard(feed)
    feed.ingest(event("market.price.AAPL", {"price": 1.5}, source="feeder"))
    feed.ingest(event("news.item", "hello", source="news"))
    dashboard.refresh()
    dashboard.refresh()  # nothing new: nothing added

    table = dashboard.events.table.value
    assert topics(dashboard) == ["news.item", "market.price.AAPL"]
    assert list(table["source"]) == ["news", "feeder"]
    assert list(table["type"]) == ["event", "event"]
    assert list(table["size"]) == [len(b'"hello"'), len(b'{"price":1.5}')]
    assert all(len(clock) == len("12:34:56.789") for clock in table["time"])

    feed.ingest(event("news.item", "again"))
    dashboard.refresh()
    assert topics(dashboard) == ["news.item", "news.item", "market.price.AAPL"]


def test_filter_keeps_only_matching_topics_including_earlier_ones(feed: StudioFeed) -> None:
    dashboard = Dashboard(feed)
    for topic in ("market.price.AAPL", "news.item", "market.price.MSFT"):
        feed.ingest(event(topic))
    dashboard.refresh()

    dashboard.events.pattern.value = "market.price.*"
    dashboard.refresh()
    assert topics(dashboard) == ["market.price.MSFT", "market.price.AAPL"]

    feed.ingest(event("news.item"))
    feed.ingest(event("market.price.IBM"))
    dashboard.refresh()
    assert topics(dashboard) == ["market.price.IBM", "market.price.MSFT", "market.price.AAPL"]

    dashboard.events.pattern.value = "nothing.*"  # nothing matches: an empty table
    dashboard.refresh()
    assert topics(dashboard) == []

    dashboard.events.pattern.value = ""
    dashboard.refresh()
    assert len(topics(dashboard)) == 5


def test_bad_pattern_shows_the_topic_error_and_keeps_the_last_filter(feed: StudioFeed) -> None:
    dashboard = Dashboard(feed)
    feed.ingest(event("market.price.AAPL"))
    feed.ingest(event("news.item"))
    events = dashboard.events
    events.pattern.value = "news.*"
    dashboard.refresh()

    events.pattern.value = "market..price"
    dashboard.refresh()
    assert events.error.visible
    assert "empty segment" in events.error.object
    assert topics(dashboard) == ["news.item"]

    events.pattern.value = "market.*"
    dashboard.refresh()
    assert not events.error.visible
    assert topics(dashboard) == ["market.price.AAPL"]


def test_pause_holds_new_rows_and_counts_them_until_resume(feed: StudioFeed) -> None:
    dashboard = Dashboard(feed)
    events = dashboard.events
    feed.ingest(event("a.b"))
    dashboard.refresh()

    events.pause.value = True
    assert events.pause.label == "Resume"
    for _ in range(3):
        feed.ingest(event("a.c"))
    dashboard.refresh()
    assert topics(dashboard) == ["a.b"]
    assert "<b>3</b> events waiting" in events.waiting.object

    events.pause.value = False
    dashboard.refresh()
    assert topics(dashboard) == ["a.c", "a.c", "a.c", "a.b"]
    assert events.waiting.object == ""
    assert events.pause.label == "Pause"


def seq_of(dashboard: Dashboard, topic: str) -> str:
    table = dashboard.events.table.value
    return str(table.loc[table["topic"] == topic, "seq"].iloc[0])


def test_a_click_shows_the_clicked_events_payload(feed: StudioFeed) -> None:
    dashboard = Dashboard(feed)
    feed.ingest(event("orders.new", {"symbol": "AAPL", "qty": 3}, source="executor"))
    feed.ingest(event("blobs.raw", b"\x00\x01", source="camera"))
    dashboard.refresh()

    dashboard.events.clicks.click(seq_of(dashboard, "orders.new"))
    shown = dashboard.events.payload.object
    assert shown["data"] == {"symbol": "AAPL", "qty": 3}
    assert (shown["topic"], shown["source"], shown["type"]) == ("orders.new", "executor", "event")
    assert "orders.new from executor" in dashboard.events.payload_title.object

    dashboard.events.clicks.click(seq_of(dashboard, "blobs.raw"))
    assert dashboard.events.payload.object["data"] == repr(b"\x00\x01")


def test_the_clicked_payload_stays_while_newer_rows_come_and_no_row_is_selected(
    feed: StudioFeed,
) -> None:
    dashboard = Dashboard(feed)
    feed.ingest(event("orders.new", {"qty": 3}))
    dashboard.refresh()
    dashboard.events.clicks.click(seq_of(dashboard, "orders.new"))

    for n in range(MAX_ROWS + 5):  # it is pushed down, then out of the table
        feed.ingest(event(f"tick.{n}"))
        if n % 100 == 0:
            dashboard.refresh()
    dashboard.refresh()
    assert "orders.new" not in topics(dashboard)
    assert dashboard.events.payload.object["topic"] == "orders.new"
    # a selected row would pull the table to it, away from the newest rows on top
    assert dashboard.events.table.selection == []
    assert dashboard.events.table.selectable is False


def test_a_click_on_a_row_a_late_page_still_shows_finds_it_in_the_feed(feed: StudioFeed) -> None:
    # a loaded browser draws the refreshes late: the row it shows has left the table here
    dashboard = Dashboard(feed)
    feed.ingest(event("orders.new", {"qty": 3}, source="executor"))
    dashboard.refresh()
    clicked = seq_of(dashboard, "orders.new")
    for n in range(MAX_ROWS + 5):
        feed.ingest(event(f"tick.{n}"))
    dashboard.refresh()
    assert "orders.new" not in topics(dashboard)

    dashboard.events.clicks.click(clicked)
    assert dashboard.events.payload.object["data"] == {"qty": 3}
    assert "orders.new from executor" in dashboard.events.payload_title.object


def test_a_click_on_an_event_no_longer_held_says_so_and_keeps_the_payload(
    feed: StudioFeed,
) -> None:
    dashboard = Dashboard(feed)
    feed.ingest(event("a.b", {"n": 1}))
    dashboard.refresh()
    dashboard.events.clicks.click(seq_of(dashboard, "a.b"))
    dashboard.events.clicks.click("999999")
    assert dashboard.events.payload.object["data"] == {"n": 1}  # what it showed stays
    title = dashboard.events.payload_title.object
    assert "no longer held" in title and f"last {feed.max_events:,} events" in title


def test_the_feed_finds_an_event_by_its_number_while_it_holds_it() -> None:
    feed = StudioFeed(max_events=3)
    for n in range(5):
        feed.ingest(event(f"t.{n}"))
    assert [feed.event(seq).topic for seq in (3, 4, 5)] == ["t.2", "t.3", "t.4"]
    assert feed.event(2) is None and feed.event(6) is None and feed.event(0) is None


def test_a_burst_between_refreshes_is_one_bounded_update(feed: StudioFeed) -> None:
    dashboard = Dashboard(feed)
    table = dashboard.events.table
    updates: list[int] = []
    table.param.watch(lambda change: updates.append(len(change.new)), "value")
    for n in range(2000):
        feed.ingest(event(f"burst.{n}"))
    dashboard.refresh()

    assert updates == [MAX_ROWS]
    assert topics(dashboard) == [f"burst.{n}" for n in reversed(range(2000 - MAX_ROWS, 2000))]

    for n in range(10):
        feed.ingest(event(f"more.{n}"))
    dashboard.refresh()
    dashboard.refresh()  # nothing new: nothing sent
    assert updates == [MAX_ROWS, MAX_ROWS]
    assert topics(dashboard)[:2] == ["more.9", "more.8"]
    assert len(dashboard.events.shown) == MAX_ROWS  # the rows kept are bounded too

    dashboard.events.pattern.value = "burst.*"  # a refill replaces the rows: still one table
    dashboard.refresh()
    assert len(table.value) == MAX_ROWS
    assert table.pagination is None  # it scrolls, it does not page
