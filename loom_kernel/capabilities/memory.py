"""Agents' memory: a bounded short-term deque per agent, long-term SQLite shared by all.

An agent sees a :class:`Memory` as ``ctx.memory``. Every item goes to the agent's short-term
deque (the newest ``short_term_size``); durable items also go to the project's
:class:`MemoryStore`, one SQLite file with a full-text index that every agent of every process
shares and that survives restarts, kept within ``[memory] max_items`` per agent and
``max_mb`` (see ``docs/memory.md``).
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..errors import MemoryQueryError
from ._memory_store import ItemFilter, MemoryItem, MemoryStatistics, MemoryStore, tokenize

__all__ = [
    "DecisionStats",
    "Memory",
    "MemoryItem",
    "MemoryQueryError",
    "MemoryStatistics",
    "MemoryStore",
]

MAX_LIMIT = 1000
Since = float | datetime | timedelta | None


@dataclass(frozen=True)
class DecisionStats:
    """Decisions of an agent and how many were executed (:meth:`Memory.execution_stats`)."""

    total: int
    executed: int
    pending: int
    by_action: dict[str, int]
    execution_rate: float


class Memory:
    """What an agent sees as ``ctx.memory``: its short-term deque and the shared long-term store.

    Example::

        memory = Memory(store, "planner", short_term_size=200)
        await memory.add("observation", {"symbol": "AAPL", "price": 187.2}, key="AAPL")
        hits = await memory.query("aapl", kind="observation", since=timedelta(hours=1))
    """

    def __init__(
        self,
        store: MemoryStore,
        agent_id: str,
        *,
        short_term_size: int = 200,
        default_ttl: float | None = None,
    ):
        self.store = store
        self.agent_id = _name("agent_id", agent_id)
        self.default_ttl = None if default_ttl is None else _seconds("default_ttl", default_ttl)
        self._short: deque[MemoryItem] = deque(
            maxlen=_limit("short_term_size", short_term_size, None)
        )

    async def add(
        self,
        kind: str,
        content: Any,
        key: str | None = None,
        ttl: float | None = None,
        *,
        durable: bool = True,
        meta: dict[str, Any] | None = None,
    ) -> MemoryItem:
        """Remember ``content``: in short-term memory always, in the long-term store if durable.

        Args:
            kind: what it is (``"observation"``, ``"decision"``...), used by ``query(kind=)``.
            content: a str or a JSON-compatible value (dict, list, number, bool, None).
            key: an optional subject (``"AAPL"``), used by ``query(key=)``.
            ttl: seconds it lives (default: the memory's ``default_ttl``; None: forever).
            durable: False keeps it in this agent's short-term memory only.
            meta: JSON-compatible extra fields, not searched.

        Raises:
            MemoryQueryError: a bad argument or content JSON cannot encode; nothing is written.

        Example: ``item = await memory.add("note", "AAPL broke out", key="AAPL", ttl=3600)``
        """
        kind, key = _name("kind", kind), _optional_name("key", key)
        ttl = self.default_ttl if ttl is None else _seconds("ttl", ttl)
        if meta is not None and not isinstance(meta, dict):
            raise _bad("meta", meta, "a dict, e.g. meta={'source': 'news'}")
        now = self.store.clock()
        item = MemoryItem(
            id=uuid.uuid4().hex,
            agent=self.agent_id,
            kind=kind,
            key=key,
            content=_json_copy("content", content),
            created=now,
            expires=None if ttl is None else now + ttl,
            meta=_json_copy("meta", meta or {}),
            durable=bool(durable),
        )
        if item.durable:
            await self.store.insert(item)
        self._short.append(item)
        return item

    async def query(
        self,
        text: str | None = None,
        kind: str | None = None,
        key: str | None = None,
        since: Since = None,
        limit: int = 10,
        *,
        agent: str | None = None,
    ) -> list[MemoryItem]:
        """Items matching every filter given: best text match first, else newest first.

        Args:
            text: words to find (full-text, any order, case-insensitive; no query syntax).
            kind: exact match of the item's kind.
            key: exact match of the item's key.
            since: epoch seconds, a datetime (naive: local time) or a timedelta (the last ...).
            limit: 1 to 1000 items.
            agent: None: this agent's items; ``"*"``: every agent's; else that agent's.

        Raises:
            MemoryQueryError: a filter of the wrong type or out of range.

        Example: ``await memory.query("breakout", key="AAPL", since=timedelta(days=1))``
        """
        if text is not None and not isinstance(text, str):
            raise _bad("text", text, "a str of words, e.g. text='aapl breakout'")
        where = self._filter(kind, key, since, _limit("limit", limit), agent)
        where = dataclasses.replace(where, tokens=tokenize(text or ""))
        return self._merge(where, await self.store.select(where))

    def recent(self, n: int = 10, kind: str | None = None) -> list[MemoryItem]:
        """This agent's newest short-term items, newest first (no I/O). ``memory.recent(5)``"""
        where = self._filter(kind, None, None, _limit("n", n, None), None)
        return [item for item in reversed(self._short) if where.matches(item)][:n]

    async def forget(self, item_id: str) -> bool:
        """Remove an item everywhere; False if there was none. ``await memory.forget(item.id)``"""
        item_id = _name("item_id", item_id)
        kept = [item for item in self._short if item.id != item_id]
        here = len(kept) < len(self._short)
        self._short = deque(kept, maxlen=self._short.maxlen)
        return await self.store.delete(item_id) or here

    # -- decisions -----------------------------------------------------------------------

    async def record_decision(
        self,
        key: str,
        decision: dict[str, Any],
        *,
        evidence: dict[str, Any] | None = None,
        ttl: float | None = None,
    ) -> MemoryItem:
        """Remember a decision about ``key`` (kind ``"decision"``; evidence goes to ``meta``).

        Example: ``item = await memory.record_decision("AAPL", {"action": "buy", "qty": 10})``
        """
        if not isinstance(decision, dict):
            raise _bad("decision", decision, "a dict, e.g. {'action': 'buy', 'qty': 10}")
        meta = {} if evidence is None else {"evidence": evidence}
        return await self.add("decision", decision, _name("key", key), ttl, meta=meta)

    async def recent_decisions(
        self,
        key: str | None = None,
        limit: int = 10,
        since: Since = None,
    ) -> list[MemoryItem]:
        """This agent's decisions, newest first. ``await memory.recent_decisions("AAPL")``"""
        return await self.query(kind="decision", key=key, since=since, limit=limit)

    async def last_decision(self, key: str) -> MemoryItem | None:
        """This agent's newest decision about ``key``, or None."""
        found = await self.recent_decisions(_name("key", key), limit=1)
        return found[0] if found else None

    async def is_duplicate(
        self,
        key: str,
        decision: dict[str, Any],
        *,
        window: float = 300.0,
        fields: Sequence[str] = ("action",),
    ) -> bool:
        """True when the newest decision about ``key`` in the last ``window`` seconds has the
        same values as ``decision`` on ``fields``.

        Example: ``if not await memory.is_duplicate("AAPL", {"action": "buy"}): ...``
        """
        if not isinstance(decision, dict):
            raise _bad("decision", decision, "a dict, e.g. {'action': 'buy'}")
        if isinstance(fields, str) or not all(isinstance(name, str) for name in fields):
            raise _bad("fields", fields, "a list of field names, e.g. fields=('action', 'qty')")
        since = timedelta(seconds=_seconds("window", window))
        last = await self.recent_decisions(_name("key", key), limit=1, since=since)
        if not last or not isinstance(last[0].content, dict):
            return False
        return all(last[0].content.get(name) == decision.get(name) for name in fields)

    async def mark_executed(self, item_id: str, outcome: Any = None) -> MemoryItem:
        """Record that a decision was carried out, and its outcome (JSON-compatible).

        Raises:
            MemoryQueryError: no item has this id (expired, forgotten, or not from ``add``).

        Example: ``await memory.mark_executed(item.id, outcome={"filled": 10})``
        """
        item_id, outcome = _name("item_id", item_id), _json_copy("outcome", outcome)
        now = self.store.clock()
        local = next((item for item in self._short if item.id == item_id), None)
        if local is not None and not local.durable:
            item: MemoryItem | None = dataclasses.replace(local, executed_at=now, outcome=outcome)
        else:
            item = await self.store.mark(item_id, now, outcome)
        if item is None:
            raise MemoryQueryError(
                f"no memory item has id {item_id!r}: pass the .id of an item that add() or "
                "record_decision() returned (it may have expired or been forgotten)"
            )
        self._short = deque(
            (item if old.id == item_id else old for old in self._short), maxlen=self._short.maxlen
        )
        return item

    async def execution_stats(self, key: str | None = None, since: Since = None) -> DecisionStats:
        """Counts of this agent's decisions, executed ones, and per ``decision["action"]``.

        Example: ``(await memory.execution_stats("AAPL")).execution_rate``
        """
        where = self._filter("decision", key, since, None, None)
        decisions = self._merge(where, await self.store.select(where))
        executed = sum(item.executed_at is not None for item in decisions)
        by_action: dict[str, int] = {}
        for item in decisions:
            if isinstance(item.content, dict) and "action" in item.content:
                action = str(item.content["action"])
                by_action[action] = by_action.get(action, 0) + 1
        total = len(decisions)
        rate = executed / total if total else 0.0
        return DecisionStats(total, executed, total - executed, by_action, rate)

    # -- helpers ------------------------------------------------------------------------

    def _filter(self, kind: Any, key: Any, since: Any, limit: int | None, agent: Any) -> ItemFilter:
        now = self.store.clock()
        if agent is None:
            scope: str | None = self.agent_id
        else:
            scope = None if agent == "*" else _name("agent", agent)
        return ItemFilter(
            now=now,
            agent=scope,
            kind=_optional_name("kind", kind),
            key=_optional_name("key", key),
            since=_since(since, now),
            limit=limit,
        )

    def _merge(self, where: ItemFilter, found: list[MemoryItem]) -> list[MemoryItem]:
        """Add this agent's matching non-durable items (the store never saw them)."""
        seen = {item.id for item in found}
        extra = [
            item
            for item in reversed(self._short)
            if not item.durable and item.id not in seen and where.matches(item)
        ]
        if not extra:
            return found
        if where.tokens:  # ranked text results keep their order; short-term matches follow
            merged = found + extra
        else:
            merged = sorted(found + extra, key=lambda item: item.created, reverse=True)
        return merged[: where.limit]


def _json_copy(what: str, value: Any) -> Any:
    """``value`` as it will come back from the store: a JSON round trip, or a helpful error."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise MemoryQueryError(
            f"{what} cannot be stored as JSON ({exc}): pass a str, number, bool, None, or "
            "dicts/lists of those; convert other values first, e.g. str(x) or dt.isoformat()"
        ) from None


def _bad(what: str, value: Any, expected: str) -> MemoryQueryError:
    return MemoryQueryError(f"{what}={value!r} ({type(value).__name__}): expected {expected}")


def _name(what: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(what, value, f'a non-empty str, e.g. {what}="AAPL"')
    return value


def _optional_name(what: str, value: Any) -> str | None:
    return None if value is None else _name(what, value)


def _seconds(what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise _bad(what, value, f"a number of seconds > 0, e.g. {what}=3600")
    return float(value)


def _limit(what: str, value: Any, most: int | None = MAX_LIMIT) -> int:
    too_big = most is not None and isinstance(value, int) and value > most
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or too_big:
        bound = f"from 1 to {most}" if most else ">= 1"
        raise _bad(what, value, f"an int {bound}, e.g. {what}=10")
    return value


def _since(value: Any, now: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()  # a naive datetime is taken as local time
    if isinstance(value, timedelta):
        return now - value.total_seconds()
    raise _bad(
        "since",
        value,
        "epoch seconds (time.time() - 3600), a datetime, or a timedelta "
        "(since=timedelta(hours=1): the last hour)",
    )
