"""The studio's page and the views its URL asks for (``?agent=``, ``?topic=``), on a real
feed fed real envelopes."""

from __future__ import annotations

import asyncio
import itertools
import logging
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


async def test_a_tab_closed_mid_write_is_not_an_error_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A browser closing its tab while Bokeh writes to it is the normal end of a session:
    no ERROR traceback in the demo's console; any other lost task error still is one."""
    import gc

    from tornado.websocket import WebSocketClosedError

    from loom_studio.app import quiet_closed_websockets

    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    quiet_closed_websockets(loop)
    quiet_closed_websockets(loop)  # a second studio on the loop: still one handler
    try:

        async def closed() -> None:
            raise WebSocketClosedError()

        async def broken() -> None:
            raise RuntimeError("a real bug")

        with caplog.at_level(logging.DEBUG):
            for coro in (closed(), broken()):
                task = loop.create_task(coro)
                await asyncio.sleep(0)
                del task
            gc.collect()  # the unretrieved exceptions are reported when the tasks go
        errors = [r.getMessage() + str(r.exc_info) for r in caplog.records if r.levelno >= 40]
        assert len(errors) == 1 and "a real bug" in errors[0], errors
        assert "WebSocketClosedError" not in errors[0]
    finally:
        loop.set_exception_handler(previous)
