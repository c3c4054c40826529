"""The topic explorer: every topic the bus carried, as a tree by segment with counts and
rates; a pattern box showing which topics a pattern matches (the kernel's own matcher);
and, for the topic clicked, its publishers and subscribers, its payload's schema, its last
events and a form to publish a test event or send a request
(:mod:`~loom_studio.topic_detail`).

It reads a :class:`~loom_studio.topic_index.TopicIndex` and refreshes on one periodic
callback (every ``refresh_ms``), sending the page only what changed.

>>> from loom_studio import TopicExplorer      # doctest: +SKIP
>>> TopicExplorer(runtime=rt)                   # a notebook cell: live beside your agents
"""

from __future__ import annotations

import html
import json
import logging
from typing import TYPE_CHECKING, Any

import panel as pn

from loom_kernel import TopicError

from .notebook import InlineViewer
from .tables import RowClicks
from .topic_detail import TopicDetail
from .topic_index import TopicIndex, get_topic_index
from .topic_tree import tree_frame, tree_rows

if TYPE_CHECKING:
    from loom_kernel import Runtime

__all__ = ["PATTERN_RULES", "TopicExplorer"]

log = logging.getLogger("loom.studio")

REFRESH_MS = 500
MAX_MATCHES = 200  # topics the pattern box lists
PATTERN_RULES = """\
**Wildcards** (`docs/topics.md`): a pattern is a topic whose segments may be `*`, always a
whole segment.

- a **trailing** `*` matches **one or more** segments: `market.price.*` matches
  `market.price.BTC` and `market.price.BTC.spot`, not `market.price`;
- a `*` **anywhere else** matches **exactly one** segment: `market.*.BTC` matches
  `market.price.BTC`, not `market.price.spot.BTC`;
- a pattern **without** `*` matches only the identical topic: `market.price.BTC` never
  matches `market.price.BTCUSD`.
"""


class _Tree:
    """The topics as a tree; a click selects a topic (or, on a prefix, its pattern)."""

    def __init__(self, on_click: Any) -> None:
        self.reserved = pn.widgets.Checkbox(label="Loom's own topics (loom.…)", value=False)
        self.clicks = RowClicks("path", on_click)
        self.table = pn.widgets.Tabulator(
            tree_frame([]), disabled=True, selectable=False, show_index=False,
            hidden_columns=["path", "kind"], layout="fit_data_stretch", height=420,
            sizing_mode="stretch_width", pagination=None,
            configuration=self.clicks.configuration(),
        )  # fmt: skip
        self.panel = pn.Card(
            self.reserved, self.table, self.clicks.panel,
            title="Topics", collapsible=False, width=430, margin=(5, 5),
        )  # fmt: skip

    def refresh(self, index: TopicIndex) -> None:
        names = index.names(reserved_too=self.reserved.value)
        counts = {name: index.topics[name].count for name in names}
        rates = {name: index.rate(name) for name in names}
        frame = tree_frame(tree_rows(counts, rates))
        if not frame.equals(self.table.value):
            self.table.value = frame


class _PatternBox:
    """A pattern, and the topics seen that it matches."""

    def __init__(self) -> None:
        self.pattern = pn.widgets.TextInput(
            placeholder="pattern, e.g. market.*.AAPL", width=300, margin=(5, 10)
        )
        self.error = pn.pane.Alert("", alert_type="danger", visible=False, margin=(0, 10))
        self.matches = pn.pane.HTML("", margin=(0, 10), max_height=220, styles={"overflow": "auto"})
        self.panel = pn.Card(
            self.pattern, self.error, self.matches, pn.pane.Markdown(PATTERN_RULES, margin=(0, 10)),
            title="Pattern", collapsible=False, sizing_mode="stretch_width", margin=(5, 5),
        )  # fmt: skip
        self._shown: tuple[str, tuple[str, ...]] | None = None

    def refresh(self, index: TopicIndex) -> None:
        text = self.pattern.value_input.strip() if self.pattern.value_input else ""
        text = text or self.pattern.value.strip()
        if not text:
            self.error.visible = False
            self.matches.object = "<small>type a pattern to see the topics it matches</small>"
            self._shown = None
            return
        try:
            found = tuple(index.matching(text))
        except TopicError as exc:
            self.error.object = str(exc)
            self.error.visible = True
            return
        self.error.visible = False
        if self._shown == (text, found):
            return
        self._shown = (text, found)
        items = "".join(f"<li><code>{html.escape(t)}</code></li>" for t in found[:MAX_MATCHES])
        more = f"<li>… {len(found) - MAX_MATCHES:,} more</li>" if len(found) > MAX_MATCHES else ""
        self.matches.object = (
            f"<b>{len(found):,}</b> topic{'s' if len(found) != 1 else ''} seen match "
            f"<code>{html.escape(text)}</code><ul>{items}{more}</ul>"
        )


class TopicExplorer(InlineViewer):
    """Every topic seen on the bus, and one topic in detail.

    Args:
        index: the :class:`TopicIndex` to show; by default this process's, observing
            ``runtime``'s bus.
        runtime: the runtime whose bus it observes and publishes test events on.
        refresh_ms: milliseconds between refreshes of the page.
    """

    def __init__(
        self,
        index: TopicIndex | None = None,
        *,
        runtime: Runtime | None = None,
        refresh_ms: int = REFRESH_MS,
        **params: Any,
    ):
        super().__init__(**params)
        if index is None:
            if runtime is None:
                raise TypeError("TopicExplorer needs a runtime: `TopicExplorer(runtime=rt)`")
            index = get_topic_index(runtime)
        self.index = index
        self._runtime = runtime
        self.refresh_ms = refresh_ms
        self.tree = _Tree(self._on_click)
        self.patterns = _PatternBox()
        self.detail = TopicDetail()
        self.detail.changing = self.updating_page
        self._callback: Any = None
        self.tree.reserved.param.watch(lambda _: self.refresh(), "value")
        self._layout = pn.Column(
            pn.Row(self.tree.panel, self.patterns.panel, sizing_mode="stretch_width"),
            self.detail.panel,
            sizing_mode="stretch_width",
        )
        self.refresh()

    def __panel__(self) -> pn.viewable.Viewable:
        pn.state.onload(self._start)
        return self._layout

    @property
    def runtime(self) -> Runtime | None:
        """The runtime the explorer publishes test events through, if any."""
        return self._runtime or self.index.runtime

    def select(self, topic: str) -> None:
        """Show one topic in detail (what a click on its row does)."""
        with self.updating_page():
            self.detail.select(topic, self.index)

    def match(self, pattern: str) -> list[str]:
        """Type ``pattern`` in the pattern box; the topics seen that it matches.

        Raises:
            TopicError: the pattern is not valid (the box says why, too).
        """
        with self.updating_page():
            self.patterns.pattern.value = pattern
            self.patterns.refresh(self.index)
        return self.index.matching(pattern)

    def fill(self, **values: Any) -> None:
        """Set fields of the selected topic's form (``explorer.fill(price=195.5)``).

        Raises:
            KeyError: the form has no such field.
        """
        fields = self.detail.form.fields
        unknown = sorted(set(values) - set(fields))
        if unknown:
            known = ", ".join(repr(name) for name in fields)
            raise KeyError(f"the form of {self.detail.topic!r} has no field {unknown}: {known}")
        with self.updating_page():
            for name, value in values.items():
                widget = fields[name]
                widget.value = json.dumps(value) if "json" in widget.tags else value

    def _on_click(self, path: str) -> None:
        if path in self.index.topics:
            self.select(path)
        else:  # a prefix: the pattern of everything under it
            with self.updating_page():
                self.patterns.pattern.value = f"{path}.*"
                self.patterns.refresh(self.index)

    def refresh(self) -> None:
        """Bring every part up to date with the index, in one batch of changes (in a
        notebook, after what the page has not got yet)."""
        self.detail.runtime = self.runtime
        with self.updating_page(), pn.io.hold():
            self.tree.refresh(self.index)
            self.patterns.refresh(self.index)
            self.detail.refresh(self.index)

    async def publish(self) -> str | None:
        """Publish the form's payload on the selected topic (the Publish button)."""
        self.detail.runtime = self.runtime
        return await self.detail.publish()

    async def request(self, timeout: float = 2.0) -> Any:
        """Send the form's payload as a request; the reply's data (the Send request button)."""
        self.detail.runtime = self.runtime
        return await self.detail.request(timeout)

    @property
    def running(self) -> bool:
        """True while the explorer refreshes itself."""
        return self._callback is not None and self._callback.running

    def stop(self) -> None:
        """Stop refreshing (a served page stops by itself when its session ends)."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def _start(self) -> None:
        if not self.running:
            self._callback = pn.state.add_periodic_callback(self._refresh, period=self.refresh_ms)

    def _refresh(self) -> None:
        try:
            self.refresh()
        except Exception:  # a bad refresh must not end the page's updates: log, go on
            log.exception("topic explorer refresh failed")
