"""Topics as a tree by segment: ``market.price.AAPL`` is the leaf ``AAPL`` under
``market`` → ``price``. Each node counts the events of every topic under it (itself
included: a topic may also be the prefix of another, ``a.b`` and ``a.b.c``) and sums
their rates.

>>> [(r.path, r.count) for r in tree_rows({"a.b": 2, "a.c": 1}, {})]
[('a', 3), ('a.b', 2), ('a.c', 1)]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

__all__ = ["TREE_COLUMNS", "TreeRow", "tree_frame", "tree_rows"]

INDENT = "\u00a0\u00a0\u00a0"  # non-breaking: the page keeps it
TREE_COLUMNS = ["topic", "events", "rate /s", "path", "kind"]


@dataclass(frozen=True)
class TreeRow:
    """One node of the tree."""

    path: str  # the dotted prefix this node stands for
    depth: int
    count: int
    rate: float
    is_topic: bool  # a topic seen, not only a prefix of others

    @property
    def label(self) -> str:
        segment = self.path.rsplit(".", 1)[-1]
        return f"{INDENT * self.depth}{segment}"


def tree_rows(counts: Mapping[str, int], rates: Mapping[str, float]) -> list[TreeRow]:
    """The nodes, depth first, siblings sorted by name."""
    totals: dict[tuple[str, ...], list[float]] = {}
    for topic, count in counts.items():
        parts = tuple(topic.split("."))
        for depth in range(1, len(parts) + 1):
            node = totals.setdefault(parts[:depth], [0, 0.0])
            node[0] += count
            node[1] += rates.get(topic, 0.0)
    rows = []
    for parts, (count, rate) in sorted(totals.items()):
        path = ".".join(parts)
        rows.append(TreeRow(path, len(parts) - 1, int(count), round(rate, 2), path in counts))
    return rows


def tree_frame(rows: list[TreeRow]) -> pd.DataFrame:
    """The tree as the explorer's table shows it (``path`` and ``kind`` hidden)."""
    return pd.DataFrame(
        [(r.label, r.count, r.rate, r.path, "topic" if r.is_topic else "prefix") for r in rows],
        columns=TREE_COLUMNS,
    ).astype({"events": "int64", "rate /s": "float64"})
