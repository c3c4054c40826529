"""The studio's page and the views its URL asks for (``?agent=``, ``?topic=``), on a real
feed fed real envelopes."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import panel as pn
import pytest

from loom_kernel.protocol.envelope import Envelope, encode_data
from loom_studio.app import create_app, dashboard_view
from loom_studio.dashboard import Dashboard
from loom_studio.feed import StudioFeed

pytestmark = pytest.mark.timeout(60)

_ids = itertools.count(1)


def event(topic: str, *, source: str) -> Envelope:
    payload, content_type = encode_data({"n": 1})
    return Envelope(
        topic=topic, data={"n": 1}, payload=payload, content_type=content_type, source=source,
        type="event", ts=time.time_ns(), id=f"e-{next(_ids)}",
    )  # fmt: skip


@pytest.fixture
def feed() -> StudioFeed:
    feed = StudioFeed()
    for _ in range(3):
        feed.ingest(event("sensor.temp.kitchen", source="sensor"))
        feed.ingest(event("alert.temp.kitchen", source="monitor"))
    return feed


def page(feed: StudioFeed, tmp_path: Path, **view: Any) -> pn.Column:
    return create_app(feed, tmp_path / "traces.db", **view)


def view(feed: StudioFeed, **view: Any) -> Dashboard:
    dashboard = dashboard_view(feed, **view)
    dashboard.refresh()
    return dashboard


def shown(dashboard: Dashboard, column: str) -> set[str]:
    return set(dashboard.events.table.value[column])


def test_the_page_has_the_dashboard_the_traces_the_topics_and_the_editor(
    feed: StudioFeed, tmp_path: Path
) -> None:
    app = page(feed, tmp_path)
    assert len(app) == 2  # the title, the tabs: no note
    assert app[-1]._names == ["Dashboard", "Traces", "Topics", "Editor", "Builder", "History"]


def test_the_dashboard_shows_every_event_by_default(feed: StudioFeed) -> None:
    dashboard = view(feed)
    assert shown(dashboard, "source") == {"sensor", "monitor"}
    assert dashboard.events.pattern.value == ""


def test_a_topic_view_fills_the_event_filter(feed: StudioFeed) -> None:
    dashboard = view(feed, topic="alert.temp.*")
    assert dashboard.events.pattern.value == "alert.temp.*"
    assert shown(dashboard, "topic") == {"alert.temp.kitchen"}


def test_a_bad_topic_in_the_url_is_explained_and_filters_nothing(feed: StudioFeed) -> None:
    dashboard = view(feed, topic="alert..temp")
    assert dashboard.events.error.visible
    assert "empty segment" in dashboard.events.error.object
    assert shown(dashboard, "source") == {"sensor", "monitor"}


def test_an_agent_view_shows_the_events_it_published(feed: StudioFeed) -> None:
    dashboard = view(feed, agent="monitor")
    assert shown(dashboard, "source") == {"monitor"}
    # the rest of the dashboard still sees the whole system
    assert dashboard.feed.agents is feed.agents
    assert dashboard.feed.seq == feed.seq


def test_an_agent_page_says_whose_events_show(feed: StudioFeed, tmp_path: Path) -> None:
    note = page(feed, tmp_path, agent="monitor")[1]
    assert isinstance(note, pn.pane.Alert)
    assert "the events agent <b>monitor</b> published" in note.object
    assert 'href="./"' in note.object  # back to every event


def test_an_agent_name_is_shown_as_text(feed: StudioFeed, tmp_path: Path) -> None:
    note = page(feed, tmp_path, agent="<script>x</script>")[1]
    assert "<script>" not in note.object
