"""How long-term memory stays bounded: expired items, each agent's oldest, the file's size.

Private to :mod:`._memory_store`, whose worker thread calls these on its own connection
after inserts (never per insert: see :class:`Retention`). Each function deletes in batches of
:data:`BATCH` rows, one transaction each, so another process's writes interleave and the WAL
stays small; the ``items_unindex`` trigger drops the deleted rows' text from the full-text
index in the same transaction. The pages freed go to SQLite's freelist and are reused by
later inserts (``auto_vacuum`` stays off), so once full the file stops growing, it does
not shrink.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field

__all__ = [
    "BATCH",
    "PURGE_EVERY",
    "Retention",
    "drop_over_size",
    "purge_expired",
    "transaction",
    "trim_agent",
]

BATCH = 2000  # rows per delete transaction
PURGE_EVERY = 60.0  # seconds between purges of expired rows: one DELETE per write would be waste
SIZE_CHECK_EVERY = 1000  # inserts (per process) between checks of the file's size
SIZE_TARGET = 0.9  # over max_mb, the oldest go until about this share of it is in use
SIZE_MOST = 0.25  # ...but at most this share of the rows per check (the index may lag behind)
_EXPIRED = "SELECT seq FROM items WHERE expires <= ? LIMIT ?"
_OLDEST_OF = "SELECT seq FROM items WHERE agent = ? ORDER BY created, seq LIMIT ?"
_OLDEST = "SELECT seq FROM items ORDER BY created, seq LIMIT ?"


@dataclass
class Retention:
    """When to check what, for one store (a process): expired items every
    :data:`PURGE_EVERY` seconds; an agent's count at its first insert, then every
    ``max_items // 100`` of its inserts (1 to 1000); the file's size every
    :data:`SIZE_CHECK_EVERY` inserts. Between checks an agent may exceed ``max_items`` by that
    interval, at most 1 %.
    """

    max_items: int | None = None
    max_bytes: int | None = None
    last_purge: float = float("-inf")
    _until_trim: dict[str, int] = field(default_factory=dict, init=False)
    _until_size: int = field(default=0, init=False)

    def purge_due(self, now: float) -> bool:
        if now - self.last_purge < PURGE_EVERY:
            return False
        self.last_purge = now
        return True

    def trim_due(self, agent: str) -> bool:
        """Counts an insert by ``agent``; True when its count is to be checked now."""
        if self.max_items is None:
            return False
        left = self._until_trim.get(agent, 0)
        if left <= 0:
            self._until_trim[agent] = max(1, min(1000, self.max_items // 100)) - 1
            return True
        self._until_trim[agent] = left - 1
        return False

    def size_due(self) -> bool:
        """Counts an insert; True when the file's size is to be checked now."""
        if self.max_bytes is None:
            return False
        self._until_size -= 1
        if self._until_size < 0:
            self._until_size = SIZE_CHECK_EVERY - 1
            return True
        return False


def purge_expired(db: sqlite3.Connection, now: float) -> int:
    """Delete every item whose ``expires`` is past; returns how many."""
    return _delete_batches(db, _EXPIRED, (now,), None)


def trim_agent(db: sqlite3.Connection, agent: str, max_items: int) -> int:
    """Delete ``agent``'s oldest items beyond ``max_items``; returns how many."""
    # Counting walks the agent's part of an index: cheap next to the inserts between checks.
    count = db.execute("SELECT count(*) FROM items WHERE agent = ?", (agent,)).fetchone()[0]
    if count <= max_items:
        return 0
    return _delete_batches(db, _OLDEST_OF, (agent,), count - max_items)


def drop_over_size(db: sqlite3.Connection, max_bytes: int) -> int:
    """When the pages in use exceed ``max_bytes``, delete the oldest items of every agent
    (about as many as bring it to :data:`SIZE_TARGET` of it); returns how many."""
    page, pages, free = (
        db.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("page_size", "page_count", "freelist_count")
    )
    used = (pages - free) * page
    if used <= max_bytes:
        return 0
    count = db.execute("SELECT count(*) FROM items").fetchone()[0]
    share = min(SIZE_MOST, 1 - SIZE_TARGET * max_bytes / used)
    return _delete_batches(db, _OLDEST, (), math.ceil(count * share))


def _delete_batches(
    db: sqlite3.Connection, select: str, params: tuple[object, ...], most: int | None
) -> int:
    """Delete the rows ``select`` picks (its last parameter: a batch size), a batch per
    transaction, until it picks none or ``most`` are gone."""
    deleted = 0
    while most is None or deleted < most:
        size = BATCH if most is None else min(BATCH, most - deleted)
        with transaction(db):
            done = db.execute(
                f"DELETE FROM items WHERE seq IN ({select})", (*params, size)
            ).rowcount
        deleted += done
        if done < size:
            break
    return deleted


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front, so a busy file waits (busy_timeout) here
    # instead of failing later when a read transaction tries to become a write one.
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
