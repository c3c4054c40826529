"""Placeholder: the dashboard view (being written)."""

from __future__ import annotations

import panel as pn


class Dashboard(pn.viewable.Viewer):
    def __init__(self, feed=None, **params):
        super().__init__(**params)
        self.feed = feed

    def __panel__(self):
        return pn.pane.Markdown("dashboard")
