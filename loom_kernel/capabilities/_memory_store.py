"""The long-term half of agents' memory: one SQLite file per project, with a full-text index.

Private: :mod:`loom_kernel.memory` is the public face (it re-exports :class:`MemoryStore`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LoomError
from ._memory_retention import (
    Retention,
    drop_over_size,
    purge_expired,
    transaction,
    trim_agent,
)

__all__ = ["ItemFilter", "MemoryItem", "MemoryStatistics", "MemoryStore", "text_of", "tokenize"]

_log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
BUSY_TIMEOUT = 10.0  # seconds a write waits for another process's write transaction
WAL_LIMIT = 16 * 2**20  # bytes the WAL file is truncated to after a checkpoint
_TOKEN = re.compile(r"[^\W_]+")  # runs of letters and digits, as FTS5's unicode61 tokenizer sees
_COLUMNS = ("id", "agent", "kind", "key", "content", "created", "expires", "executed_at")
_COLUMNS += ("outcome", "meta")
_JSON = ("content", "outcome", "meta")  # columns holding JSON text
_SELECT = ", ".join(f"i.{name}" for name in _COLUMNS)
_NEWEST = "i.created DESC, i.seq DESC"  # seq breaks ties: same-instant items stay ordered
_INSERT = f"INSERT INTO items ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"
_SCHEMA = (
    # seq is the rowid shared with items_fts; declared so that VACUUM cannot renumber it.
    """CREATE TABLE items (
        seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, agent TEXT NOT NULL,
        kind TEXT NOT NULL, key TEXT, content TEXT NOT NULL, created REAL NOT NULL,
        expires REAL, executed_at REAL, outcome TEXT, meta TEXT NOT NULL)""",
    "CREATE INDEX items_by_agent ON items (agent, kind, key, created)",
    "CREATE INDEX items_by_created ON items (created)",
    "CREATE INDEX items_by_expiry ON items (expires) WHERE expires IS NOT NULL",
    "CREATE VIRTUAL TABLE items_fts USING fts5 (text)",
    # Deleting an item (forget, purge) drops its text from the index in the same transaction.
    """CREATE TRIGGER items_unindex AFTER DELETE ON items BEGIN
        DELETE FROM items_fts WHERE rowid = old.seq; END""",
)
# Schema version -> what brings a file of the version before up to it.
_MIGRATIONS = {
    # An agent's oldest items, for max_items (the rowid, seq, ends every index entry).
    2: ("CREATE INDEX items_by_agent_age ON items (agent, created)",),
}


@dataclass(frozen=True)
class MemoryItem:
    """One remembered thing; ``content`` is a str or a JSON-compatible value."""

    id: str
    agent: str
    kind: str
    key: str | None
    content: Any
    created: float
    expires: float | None = None
    executed_at: float | None = None
    outcome: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    durable: bool = True

    def to_dict(self) -> dict[str, Any]:
        """The item as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MemoryStatistics:
    """What a :class:`MemoryStore` has done; ``items`` is the row count last seen.

    ``purged``: expired items deleted; ``dropped``: oldest items deleted to keep an agent
    within ``max_items`` or the file within ``max_mb``.
    """

    path: str
    items: int
    writes: int
    queries: int
    purged: int
    dropped: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class ItemFilter:
    """Validated filters: as SQL (:meth:`where`) and for short-term items (:meth:`matches`)."""

    now: float
    agent: str | None  # None: every agent
    kind: str | None = None
    key: str | None = None
    since: float | None = None
    tokens: tuple[str, ...] = ()
    limit: int | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses, params = ["(i.expires IS NULL OR i.expires > ?)"], [self.now]
        for column in ("agent", "kind", "key"):
            if getattr(self, column) is not None:
                clauses.append(f"i.{column} = ?")
                params.append(getattr(self, column))
        if self.since is not None:
            clauses.append("i.created >= ?")
            params.append(self.since)
        return " AND ".join(clauses), params

    def matches(self, item: MemoryItem) -> bool:
        return (
            (item.expires is None or item.expires > self.now)
            and all(getattr(self, c) in (None, getattr(item, c)) for c in ("agent", "kind", "key"))
            and (self.since is None or item.created >= self.since)
            and set(self.tokens) <= set(tokenize(text_of(item.key, item.content)))
        )


class MemoryStore:
    """Long-term memory of a project: one SQLite file (WAL mode) for every agent of every process.

    The file, its folder and its schema are created on first use. Expired items are deleted
    at most once a minute, after a write.

    Args:
        path: the SQLite file.
        clock: epoch seconds; dates items and expiry.
        max_items: each agent keeps at most about this many items (its oldest go first);
            None: no bound.
        max_mb: past this many MiB of pages in use, the oldest items of every agent go;
            None: no bound.

    Raises:
        ConfigError: ``max_items`` or ``max_mb`` is not a positive number.

    Example::

        async with MemoryStore(config.project_path(config.memory.path)) as store:
            memory = Memory(store, "planner")
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        max_items: int | None = None,
        max_mb: float | None = None,
    ):
        self.path = Path(path)
        self.clock = clock
        self._retention = Retention(
            max_items=_positive("max_items", max_items, int),
            max_bytes=None if max_mb is None else int(_positive("max_mb", max_mb, float) * 2**20),
        )
        # One thread owns the one connection: SQLite never blocks the event loop, and the
        # connection is never shared between threads, so no lock is needed.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-memory")
        self._db: sqlite3.Connection | None = None
        self._closed = False
        self._items = self._writes = self._queries = self._purged = self._dropped = 0

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the file and stop the worker thread; calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._close_db)
        finally:
            self._executor.shutdown(wait=False)

    def statistics(self) -> MemoryStatistics:
        """Counters for the dashboard; ``items`` is the row count as this process last saw it."""
        return MemoryStatistics(
            str(self.path), self._items, self._writes, self._queries, self._purged, self._dropped
        )

    # -- what Memory calls: run on the worker thread --------------------------------------

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._closed:
            raise LoomError(f"the memory store {self.path} is closed: open a new MemoryStore")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def insert(self, item: MemoryItem) -> None:
        await self._run(self._insert_now, item)

    async def select(self, where: ItemFilter) -> list[MemoryItem]:
        self._queries += 1
        return await self._run(self._select_now, where)

    async def delete(self, item_id: str) -> bool:
        return await self._run(self._delete_now, item_id)

    async def mark(self, item_id: str, at: float, outcome: Any) -> MemoryItem | None:
        return await self._run(self._mark_now, item_id, at, outcome)

    def _insert_now(self, item: MemoryItem) -> None:
        db = self._connection()
        with transaction(db):
            seq = db.execute(_INSERT, _row(item)).lastrowid
            text = text_of(item.key, item.content)
            db.execute("INSERT INTO items_fts (rowid, text) VALUES (?, ?)", (seq, text))
        self._writes += 1
        self._items += 1
        self._retain(db, item.agent)

    def _retain(self, db: sqlite3.Connection, agent: str) -> None:
        """Delete what retention says must go, when a check is due (see :class:`Retention`).

        The item is already stored: a failure here is logged, not raised, and the next
        check does the work."""
        rules = self._retention
        now = self.clock()
        try:
            if rules.purge_due(now):
                purged = purge_expired(db, now)
                self._purged += purged
                self._items -= purged
            if rules.trim_due(agent) and rules.max_items is not None:
                self._dropped_now(trim_agent(db, agent, rules.max_items))
            if rules.size_due() and rules.max_bytes is not None:
                self._dropped_now(drop_over_size(db, rules.max_bytes))
        except sqlite3.Error as exc:
            _log.warning(
                "memory retention in %s failed, retried at its next check: %s", self.path, exc
            )

    def _dropped_now(self, count: int) -> None:
        self._dropped += count
        self._items -= count

    def _select_now(self, f: ItemFilter) -> list[MemoryItem]:
        where, params = f.where()
        limit = -1 if f.limit is None else f.limit  # LIMIT -1: no limit
        if f.tokens:
            # Each token quoted: user text is never FTS5 syntax (AND, NEAR, *, quotes...).
            match = " ".join(f'"{token}"' for token in f.tokens)
            sql = (
                f"SELECT {_SELECT} FROM items_fts JOIN items i ON i.seq = items_fts.rowid "
                f"WHERE items_fts MATCH ? AND {where} "
                f"ORDER BY bm25(items_fts), {_NEWEST} LIMIT ?"
            )
            params = [match, *params]
        else:
            sql = f"SELECT {_SELECT} FROM items i WHERE {where} ORDER BY {_NEWEST} LIMIT ?"
        return [_item(row) for row in self._connection().execute(sql, [*params, limit])]

    def _delete_now(self, item_id: str) -> bool:
        db = self._connection()
        with transaction(db):
            deleted = db.execute("DELETE FROM items WHERE id = ?", (item_id,)).rowcount
        self._writes += deleted
        self._items -= deleted
        return deleted > 0

    def _mark_now(self, item_id: str, at: float, outcome: Any) -> MemoryItem | None:
        db = self._connection()
        with transaction(db):
            updated = db.execute(
                "UPDATE items SET executed_at = ?, outcome = ? WHERE id = ?",
                (at, json.dumps(outcome), item_id),
            ).rowcount
            row = db.execute(f"SELECT {_SELECT} FROM items i WHERE i.id = ?", (item_id,)).fetchone()
        self._writes += updated
        return None if row is None else _item(row)

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            self._db = self._open()
        return self._db

    def _open(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # timeout= is SQLite's busy_timeout; isolation_level=None: we say BEGIN ourselves.
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
            _enable_wal(db)
            db.execute("PRAGMA synchronous = NORMAL")  # WAL stays consistent; no fsync per commit
            db.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
            self._migrate(db)
            self._items = db.execute("SELECT count(*) FROM items").fetchone()[0]
            return db
        except BaseException as exc:
            if db is not None:
                db.close()
            if isinstance(exc, OSError | sqlite3.Error):
                raise LoomError(
                    f"cannot open the memory file {self.path}: {exc}; check `path` in [memory] "
                    "of loom.toml"
                ) from exc
            raise

    def _migrate(self, db: sqlite3.Connection) -> None:
        # Inside a write transaction: two processes opening a new file create the schema once.
        with transaction(db):
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LoomError(
                    f"{self.path} has memory schema {version}, newer than this Loom's "
                    f"({SCHEMA_VERSION}): upgrade loom-studio or set another `path` in [memory]"
                )
            if version == 0:
                for statement in _SCHEMA:
                    db.execute(statement)
            for step in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[step]:
                    db.execute(statement)
            if version < SCHEMA_VERSION:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _close_db(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _enable_wal(db: sqlite3.Connection) -> None:
    """WAL: readers never wait for the writer, and writers of other processes just queue."""
    # Switching a new file to WAL needs it to itself and ignores busy_timeout, so retry while
    # another process is setting it up; on a file already in WAL the switch is a no-op.
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            if db.execute("PRAGMA journal_mode = WAL").fetchone()[0] == "wal":
                return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError("another process holds the file; cannot enable WAL")
        time.sleep(0.01)


def _positive(what: str, value: Any, kind: type) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | kind) or not value > 0:
        example = "100_000" if kind is int else "512"
        raise ConfigError(
            f"{what}={value!r}: expected a number > 0, e.g. {what}={example} (None: no bound)",
            key="memory",
        )
    return kind(value)


def _row(item: MemoryItem) -> tuple[Any, ...]:
    values = {name: getattr(item, name) for name in _COLUMNS}
    for name in _JSON:
        values[name] = json.dumps(values[name])
    return tuple(values.values())


def _item(row: tuple[Any, ...]) -> MemoryItem:
    values = dict(zip(_COLUMNS, row, strict=True))
    for name in _JSON:
        if values[name] is not None:  # outcome is NULL until mark_executed
            values[name] = json.loads(values[name])
    return MemoryItem(**values, durable=True)


def text_of(key: str | None, content: Any) -> str:
    """The searchable text of an item: its key, then its content flattened (dict keys too)."""
    parts: list[str] = [] if key is None else [key]

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for name, inner in value.items():
                parts.append(str(name))
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)
        elif value is not None:
            parts.append(str(value))

    walk(content)
    return " ".join(parts)


def tokenize(text: str) -> tuple[str, ...]:
    return tuple(_TOKEN.findall(text.lower()))
