"""The standalone studio: the dashboard, the traces, the topic explorer, the live editor,
the builder and the history of the event log as pages of one Panel app.

    loom studio                              # joins the project's bus, serves on localhost
    panel serve loom_studio/app.py           # the same app under Panel's own server

Everything the page loads comes from the local server (Panel and Bokeh serve their own
JS and CSS; no template with web fonts, no CDN), so the studio works with no internet.

The page opens on a view when asked: ``/?topic=market.price.*`` fills the event
stream's pattern filter, ``/?agent=data`` shows only the events that agent published
(JupyterLab's Loom sidebar links there). ``GET /api/live`` answers the live agents and
topics as JSON (:mod:`loom_studio.live`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

import panel as pn
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError

from loom_kernel import LoomConfig, LoomError, SpanStore, load_config

from .access import require_secret
from .dashboard import Dashboard
from .editor import Editor
from .explorer import TopicExplorer
from .feed import EventRow, StudioFeed, get_feed
from .history import History
from .live import LiveHandler
from .notebook import keep_stylesheets_inline
from .topic_index import get_topic_index
from .traces import Traces

log = logging.getLogger("loom.studio")

__all__ = [
    "builder_view",
    "create_app",
    "dashboard_view",
    "editor_view",
    "history_view",
    "quiet_closed_websockets",
    "serve",
]

TITLE = "Loom studio"


def create_app(
    feed: StudioFeed,
    store: SpanStore | str | Path,
    *,
    agent: str | None = None,
    topic: str | None = None,
    config: LoomConfig | None = None,
) -> pn.viewable.Viewable:
    """One page: the dashboard, the traces, the topics, the editor, the builder and the
    history, as tabs.

    Args:
        agent: show only the events this agent published in the event stream.
        topic: a topic pattern the event stream's filter starts with.
        config: the project's settings (its event log, for the history); None: the
            studio's runtime's, else the nearest ``loom.toml``.
    """
    header = pn.pane.Markdown(f"## {TITLE}", margin=(5, 10))
    if feed.tenant is not None:
        return _tenant_page(feed, store, header)
    traces = Traces(store=store)

    def open_trace(trace_id: str) -> None:  # a trace clicked in the history
        try:
            traces.show_trace(trace_id)
        except LoomError as exc:  # purged since it was listed
            traces.detail.object = f"<p>{escape(str(exc))}</p>"
        tabs.active = 1

    tabs = pn.Tabs(
        ("Dashboard", dashboard_view(feed, agent=agent, topic=topic)),
        ("Traces", traces),
        ("Topics", TopicExplorer(get_topic_index(lambda: feed.runtime))),
        ("Editor", editor_view(feed)),
        ("Builder", builder_view(feed)),
        ("History", history_view(feed, store, config, on_trace=open_trace)),
        dynamic=True,
        sizing_mode="stretch_width",
    )
    parts: list[Any] = [header]
    if agent:
        note = (
            f"Event stream: the events agent <b>{escape(agent)}</b> published. "
            '<a href="./" target="_self">All events</a>'
        )
        parts.append(pn.pane.Alert(note, alert_type="info", margin=(0, 10)))
    return pn.Column(*parts, tabs, sizing_mode="stretch_width", name=TITLE)


def _tenant_page(feed: StudioFeed, store: SpanStore | str | Path, header: Any) -> pn.Column:
    """One tenant's page: its dashboard and its traces. The other tabs read the whole bus
    or the operator's files (every topic, the event log, the project's code): not here."""
    tenant = feed.tenant
    assert tenant is not None
    note = (
        f"Tenant <b>{escape(tenant.name)}</b>: its agents (identities "
        f"{escape(', '.join(sorted(tenant.identities)))}) and its events "
        f"(<code>{escape(tenant.prefix)}.*</code>) only. Topics, Editor, Builder and History "
        "read the whole bus: open the studio without <code>--tenant</code> for them."
    )
    tabs = pn.Tabs(
        ("Dashboard", dashboard_view(feed)),
        ("Traces", Traces(store=store, agents=lambda: tenant.agents)),
        dynamic=True,
        sizing_mode="stretch_width",
    )
    alert = pn.pane.Alert(note, alert_type="info", margin=(0, 10))
    return pn.Column(header, alert, tabs, sizing_mode="stretch_width", name=TITLE)


def dashboard_view(
    feed: StudioFeed, *, agent: str | None = None, topic: str | None = None
) -> Dashboard:
    """The dashboard, its event stream on one agent's events or one topic pattern."""
    dashboard = Dashboard(feed=_AgentEvents(feed, agent) if agent else feed)
    if topic:
        dashboard.events.pattern.value = topic  # validated and applied as if typed
    return dashboard


def editor_view(feed: StudioFeed) -> pn.viewable.Viewable:
    """The live editor, on the studio's runtime (reloads reach the agents over the bus)."""
    if feed.runtime is None:
        return pn.pane.Alert(
            "The editor opens once the studio has joined the bus: reload the page.",
            alert_type="warning",
        )
    index = get_topic_index(lambda: feed.runtime)
    return Editor(runtime=feed.runtime, index=index)


def history_view(
    feed: StudioFeed,
    store: SpanStore | str | Path,
    config: LoomConfig | None = None,
    *,
    on_trace: Callable[[str], None] | None = None,
) -> History:
    """The event log's history: the project's (``config``, else the studio's runtime's,
    else the nearest ``loom.toml``); ``on_trace(trace_id)`` when a trace is clicked."""
    settings = config or (feed.runtime.config if feed.runtime is not None else None)
    return History(settings, store, on_trace=on_trace)


def builder_view(feed: StudioFeed) -> pn.viewable.Viewable:
    """The visual builder of the studio's project (Run starts agents in the studio's process)."""
    if feed.runtime is None:
        return pn.pane.Alert(
            "The builder opens once the studio has joined the bus: reload the page.",
            alert_type="warning",
        )
    from .builder.view import Builder  # libcst and the canvas, only when the tab is made

    return Builder(feed.runtime.config.project_dir, runtime=feed.runtime, feed=feed)


class _AgentEvents:
    """A feed whose events are one agent's: the rest of the dashboard sees everything."""

    def __init__(self, feed: StudioFeed, agent: str):
        self._feed = feed
        self._agent = agent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._feed, name)

    def events_since(self, seq: int, pattern: str | None = None) -> list[EventRow]:
        return [row for row in self._feed.events_since(seq, pattern) if row.source == self._agent]


def _page(
    feed: StudioFeed, store: Path, config: LoomConfig | None = None
) -> Callable[[], pn.viewable.Viewable]:
    """The app for one browser session, on the view its URL asks for."""

    def page() -> pn.viewable.Viewable:
        args = pn.state.session_args or {}

        def arg(name: str) -> str | None:
            values = args.get(name) or [b""]
            return values[0].decode(errors="replace").strip() or None

        # the editor's Ace is made only when its tab opens, after the page's resources are
        # chosen: named here, its JS is served with the page (from this server, like the rest)
        pn.extension("tabulator", "codeeditor")
        # a tab opened later makes its components then, and Panel would link their
        # stylesheets from its CDN: from the first render on, the page gets them inline
        pn.state.onload(lambda: keep_stylesheets_inline(pn.state.curdoc))
        return create_app(feed, store, agent=arg("agent"), topic=arg("topic"), config=config)

    return page


def serve(
    config: LoomConfig | str | os.PathLike[str] | None = None,
    *,
    port: int = 0,
    address: str = "127.0.0.1",
    feed: StudioFeed | None = None,
    secret: str | None = None,
) -> Any:
    """Start the studio's server on the running event loop; returns the Bokeh server
    (``server.port`` is the port; ``server.stop()`` stops it).

    Args:
        secret: when set, the server answers only requests carrying it (behind Jupyter:
            see :mod:`loom_studio.access`), whatever their origin, since the proxy that
            adds it has checked the origin and the user already.
    """
    settings = config if isinstance(config, LoomConfig) else load_config(config)
    store = settings.project_path(settings.tracing.store_path)
    feed = feed or get_feed(settings)
    if port == 0:  # a free port now: Bokeh checks websocket origins by exact port
        with socket.socket() as probe:
            probe.bind((address, 0))
            port = probe.getsockname()[1]
    # the page may be opened by name or by number, and by the address it listens on;
    # behind Jupyter, by whatever name the browser gives Jupyter
    origins = (
        ["*"] if secret else sorted({f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"})
    )
    # Panel's server takes SIGINT for itself (a handler that stops the event loop under the
    # program's feet); the program that embeds the studio keeps its own.
    previous = signal.getsignal(signal.SIGINT)
    server = pn.serve(
        {"/": _page(feed, store, settings)},
        port=port,
        address=address,
        show=False,
        start=False,
        threaded=False,
        title=TITLE,
        websocket_origin=origins,
        extra_patterns=[(r"/api/live", LiveHandler, {"feed": feed})],
        # a closed tab's session refreshes its views until it is discarded, 15 s after (the
        # time a slow page has to connect); Bokeh looks for them every 17 s by default, which
        # kept two or three alive beside each open page when pages come and go
        check_unused_sessions_milliseconds=2_000,
        unused_session_lifetime_milliseconds=15_000,
    )
    with contextlib.suppress(ValueError, TypeError):  # not the main thread: nothing was taken
        signal.signal(signal.SIGINT, previous)
    if secret:
        # Bokeh keeps its Tornado application private; the rule goes in front of its routes
        require_secret(server._tornado, secret)
    quiet_closed_websockets(asyncio.get_running_loop())
    server.start()
    return server


def quiet_closed_websockets(loop: asyncio.AbstractEventLoop) -> None:
    """A browser tab closed while Bokeh was writing to it leaves a Tornado write task that
    failed with ``WebSocketClosedError``, which asyncio logs as an ERROR with a traceback
    ("Task exception was never retrieved"). That is a normal end of a session: it is logged
    at debug level; every other unhandled error still goes to the previous handler."""
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), WebSocketClosedError | StreamClosedError):
            log.debug("a browser closed its session's websocket: %s", context.get("message"))
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    if getattr(previous, "_loom_quiet", False):
        return  # already in place (several studios on one loop)
    handle._loom_quiet = True  # type: ignore[attr-defined]
    loop.set_exception_handler(handle)


# `panel serve loom_studio/app.py`: Panel runs this module once per browser session.
if __name__.startswith("bokeh_app"):
    _settings = load_config(os.environ.get("LOOM_CONFIG"))
    _store = _settings.project_path(_settings.tracing.store_path)
    _page(get_feed(_settings), _store, _settings)().servable(title=TITLE)
