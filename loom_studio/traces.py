"""Placeholder: the traces view (being written)."""

from __future__ import annotations

import panel as pn


class Traces(pn.viewable.Viewer):
    def __init__(self, store=None, **params):
        super().__init__(**params)
        self.store = store

    def __panel__(self):
        return pn.pane.Markdown("traces")
