"""Long-term memory stays bounded: expired items, each agent's oldest, the file's size."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from loom_kernel.capabilities import _memory_retention, _memory_store
from loom_kernel.capabilities.memory import Memory, MemoryStore
from loom_kernel.errors import ConfigError

pytestmark = pytest.mark.timeout(30)

T0 = 1_700_000_000.0


class Clock:
    """A clock the test moves by hand: every item gets its own instant."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "memory.db"


@pytest.fixture
async def bounded(db: Path, clock: Clock) -> AsyncIterator[MemoryStore]:
    async with MemoryStore(db, clock=clock, max_items=10) as store:
        yield store


def query(path: Path, sql: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql).fetchone()[0]


def pages_in_use(path: Path) -> int:
    return query(path, "PRAGMA page_count") - query(path, "PRAGMA freelist_count")


async def add_many(memory: Memory, clock: Clock, count: int, start: int = 0, **kw) -> None:
    for n in range(start, start + count):
        clock.advance(1)
        await memory.add("tick", {"n": n, "text": f"word{n} tick number {n}"}, **kw)


async def test_over_max_items_an_agents_oldest_go_and_other_agents_keep_theirs(
    bounded: MemoryStore, clock: Clock
):
    planner, other = Memory(bounded, "planner"), Memory(bounded, "other")
    await add_many(other, clock, 5)
    await add_many(planner, clock, 25)
    kept = await planner.query(limit=100)
    assert [item.content["n"] for item in kept] == list(range(24, 14, -1))  # the newest 10
    assert [item.content["n"] for item in await other.query(limit=100)] == [4, 3, 2, 1, 0]
    stats = bounded.statistics()
    assert (stats.items, stats.dropped, stats.purged) == (15, 15, 0)


async def test_items_dropped_over_max_items_leave_the_full_text_index(
    bounded: MemoryStore, clock: Clock, db: Path
):
    memory = Memory(bounded, "planner")
    await add_many(memory, clock, 30)
    assert await memory.query("word0") == []
    assert await memory.query("word19", agent="*") == []
    assert [item.content["n"] for item in await memory.query("word29")] == [29]
    assert query(db, "SELECT count(*) FROM items_fts") == 10
    assert query(db, "SELECT count(*) FROM items_fts WHERE items_fts MATCH 'word5'") == 0


async def test_a_lowered_bound_applies_at_an_agents_first_insert(db: Path, clock: Clock):
    async with MemoryStore(db, clock=clock) as store:  # no bound
        await add_many(Memory(store, "planner"), clock, 50)
    async with MemoryStore(db, clock=clock, max_items=10) as store:
        await add_many(Memory(store, "planner"), clock, 1, start=50)
        assert store.statistics().dropped == 41
    assert query(db, "SELECT min(json_extract(content, '$.n')) FROM items") == 41


async def test_a_large_bound_is_checked_every_hundredth_of_it_so_overshoots_by_1_percent(
    db: Path, clock: Clock
):
    async with MemoryStore(db, clock=clock, max_items=1000) as store:
        await add_many(Memory(store, "planner"), clock, 1100)
    # checked at the 1st insert and every 10th after: trimmed to 1000 at the 1091st
    assert query(db, "SELECT count(*) FROM items") == 1009


async def test_expired_items_are_deleted_in_batches_by_the_periodic_purge(
    db: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(_memory_retention, "BATCH", 7)
    async with MemoryStore(db, clock=clock) as store:
        memory = Memory(store, "planner")
        await add_many(memory, clock, 30, ttl=5)
        await memory.add("note", "forever")
        clock.advance(_memory_retention.PURGE_EVERY + 1)
        await memory.add("note", "trigger")  # the first write past the interval purges
        assert store.statistics().purged == 30
        assert await memory.query("tick") == []
    assert query(db, "SELECT count(*) FROM items") == 2
    assert query(db, "SELECT count(*) FROM items_fts") == 2


async def test_the_file_stops_growing_under_a_steady_stream_once_full(db: Path, clock: Clock):
    async with MemoryStore(db, clock=clock, max_items=100) as store:
        memory = Memory(store, "planner")
        evidence = {"pad": "x" * 500}
        await add_many(memory, clock, 2000, meta=evidence)  # warm-up: the index settles
        warm = query(db, "PRAGMA page_count")
        await add_many(memory, clock, 4000, start=2000, meta=evidence)
        assert store.statistics().dropped == 5900
    assert query(db, "SELECT count(*) FROM items") == 100
    # freed pages are reused: not one page more than at the end of the warm-up, but a little
    # slack for where the index's segment merges happen to be
    assert query(db, "PRAGMA page_count") <= warm * 1.1


async def test_over_max_mb_the_oldest_items_of_every_agent_go(
    db: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(_memory_retention, "SIZE_CHECK_EVERY", 10)
    max_mb = 0.5
    async with MemoryStore(db, clock=clock, max_mb=max_mb) as store:
        planner, other = Memory(store, "planner"), Memory(store, "other")
        for n in range(0, 1000, 2):
            await add_many(planner, clock, 1, start=n, meta={"pad": "x" * 1000})
            await add_many(other, clock, 1, start=n + 1, meta={"pad": "x" * 1000})
        assert store.statistics().dropped > 0
        newest = [item.content["n"] for item in await planner.query(agent="*", limit=2)]
        assert newest == [999, 998]  # both agents' newest stay
        assert await planner.query("word0") == []  # the oldest went
    page = query(db, "PRAGMA page_size")
    assert pages_in_use(db) * page <= max_mb * 2**20 * 1.2


async def test_a_failed_check_is_logged_and_the_item_stays_stored(
    bounded: MemoryStore, clock: Clock, monkeypatch: pytest.MonkeyPatch, caplog
):
    def locked(*args: object) -> int:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(_memory_store, "trim_agent", locked)
    memory = Memory(bounded, "planner")
    item = await memory.add("note", "kept")
    assert await memory.query() == [item]
    assert "memory retention in" in caplog.text and "database is locked" in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_items": 0}, "max_items=0: expected a number > 0, e.g. max_items=100_000"),
        ({"max_items": 1.5}, "max_items=1.5"),
        ({"max_items": True}, "max_items=True"),
        ({"max_mb": 0}, "max_mb=0: expected a number > 0, e.g. max_mb=512"),
        ({"max_mb": "1"}, "max_mb='1'"),
    ],
)
def test_bad_retention_arguments_raise_a_config_error(db: Path, kwargs: dict, message: str):
    with pytest.raises(ConfigError, match=r"\[memory\] ") as raised:
        MemoryStore(db, **kwargs)
    assert message in str(raised.value)


async def test_a_version_1_file_gets_the_new_index_and_keeps_its_items(db: Path, clock: Clock):
    async with MemoryStore(db, clock=clock) as store:
        item = await Memory(store, "planner").add("note", "from an older loom")
    with sqlite3.connect(db) as conn:
        conn.execute("DROP INDEX items_by_agent_age")
        conn.execute("PRAGMA user_version = 1")
    async with MemoryStore(db, clock=clock, max_items=5) as store:
        assert await Memory(store, "planner").query() == [item]
    assert query(db, "PRAGMA user_version") == 2
    assert query(db, "SELECT count(*) FROM sqlite_master WHERE name = 'items_by_agent_age'") == 1


async def test_the_runtime_bounds_agents_memory_with_the_memory_section(project: Path) -> None:
    from loom_kernel import open_runtime

    (project / "loom.toml").write_text("[memory]\nmax_items = 3\nmax_mb = 64\n")
    async with open_runtime() as rt:
        for n in range(5):
            await rt.memory.add("note", n)
        assert [item.content for item in await rt.memory.query(limit=10)] == [4, 3, 2]
        assert rt.memory_store.statistics().dropped == 2
