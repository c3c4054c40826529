"""The standalone studio: the dashboard and the traces as pages of one Panel app.

    loom studio                              # joins the project's bus, serves on localhost
    panel serve loom_studio/app.py           # the same app under Panel's own server

Everything the page loads comes from the local server (Panel and Bokeh serve their own
JS and CSS; no template with web fonts, no CDN), so the studio works with no internet.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path
from typing import Any

import panel as pn

from loom_kernel import LoomConfig, SpanStore, load_config

from .dashboard import Dashboard
from .feed import StudioFeed, get_feed
from .traces import Traces

__all__ = ["create_app", "serve"]

TITLE = "Loom studio"


def create_app(feed: StudioFeed, store: SpanStore | str | Path) -> pn.viewable.Viewable:
    """One page: the dashboard and the traces, as tabs."""
    header = pn.pane.Markdown(f"## {TITLE}", margin=(5, 10))
    tabs = pn.Tabs(
        ("Dashboard", Dashboard(feed=feed)),
        ("Traces", Traces(store=store)),
        dynamic=True,
        sizing_mode="stretch_width",
    )
    return pn.Column(header, tabs, sizing_mode="stretch_width", name=TITLE)


def serve(
    config: LoomConfig | str | os.PathLike[str] | None = None,
    *,
    port: int = 0,
    address: str = "127.0.0.1",
    feed: StudioFeed | None = None,
) -> Any:
    """Start the studio's server on the running event loop; returns the Bokeh server
    (``server.port`` is the port; ``server.stop()`` stops it)."""
    settings = config if isinstance(config, LoomConfig) else load_config(config)
    store = settings.project_path(settings.tracing.store_path)
    feed = feed or get_feed(settings)
    if port == 0:  # a free port now: Bokeh checks websocket origins by exact port
        with socket.socket() as probe:
            probe.bind((address, 0))
            port = probe.getsockname()[1]
    # Panel's server takes SIGINT for itself (a handler that stops the event loop under the
    # program's feet); the program that embeds the studio keeps its own.
    previous = signal.getsignal(signal.SIGINT)
    server = pn.serve(
        {"/": lambda: create_app(feed, store)},
        port=port,
        address=address,
        show=False,
        start=False,
        threaded=False,
        title=TITLE,
        # the page may be opened by name or by number, and by the address it listens on
        websocket_origin=sorted({f"{address}:{port}", f"localhost:{port}", f"127.0.0.1:{port}"}),
    )
    with contextlib.suppress(ValueError, TypeError):  # not the main thread: nothing was taken
        signal.signal(signal.SIGINT, previous)
    server.start()
    return server


# `panel serve loom_studio/app.py`: Panel runs this module once per browser session.
if __name__.startswith("bokeh_app"):
    _settings = load_config(os.environ.get("LOOM_CONFIG"))
    create_app(get_feed(_settings), _settings.project_path(_settings.tracing.store_path)).servable(
        title=TITLE
    )
