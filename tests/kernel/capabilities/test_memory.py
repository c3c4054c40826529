"""Agents' memory: short-term deque, long-term SQLite with full-text search, decision helpers."""

from __future__ import annotations

import asyncio
import sqlite3
import textwrap
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from loom_kernel.capabilities.memory import Memory, MemoryQueryError, MemoryStore
from loom_kernel.errors import LoomError
from tests.conftest import PYTHON, python_env, wait_until

pytestmark = pytest.mark.timeout(30)

T0 = 1_700_000_000.0  # the fake clock's start: 2023-11-14, epoch seconds


class Clock:
    """A clock the test moves by hand, so expiry and windows need no sleeping."""

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
    return tmp_path / "nested" / ".loom" / "memory.db"


@pytest.fixture
async def store(db: Path, clock: Clock) -> AsyncIterator[MemoryStore]:
    async with MemoryStore(db, clock=clock) as opened:
        yield opened


@pytest.fixture
def memory(store: MemoryStore) -> Memory:
    return Memory(store, "planner")


def rows(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM items").fetchone()[0]


async def test_add_then_query_returns_the_item_with_its_fields(memory: Memory, db: Path):
    added = await memory.add(
        "observation", {"symbol": "AAPL", "px": 187.5}, key="AAPL", meta={"a": 1}
    )
    [found] = await memory.query()
    assert found == added
    assert found.to_dict() == {
        "id": added.id,
        "agent": "planner",
        "kind": "observation",
        "key": "AAPL",
        "content": {"symbol": "AAPL", "px": 187.5},
        "created": T0,
        "expires": None,
        "executed_at": None,
        "outcome": None,
        "meta": {"a": 1},
        "durable": True,
    }
    assert rows(db) == 1  # the parent folders were created on first use


async def test_content_comes_back_as_json_would_return_it(memory: Memory):
    await memory.add("note", ("a", 1, None, True))
    await memory.add("note", "plain text")
    assert [item.content for item in await memory.query()] == ["plain text", ["a", 1, None, True]]


async def test_filters_on_kind_key_and_since_combine(memory: Memory, clock: Clock):
    await memory.add("observation", "old aapl", key="AAPL")
    clock.advance(100)
    await memory.add("observation", "new aapl", key="AAPL")
    await memory.add("observation", "new msft", key="MSFT")
    await memory.add("note", "new note", key="AAPL")

    def texts(items):
        return [item.content for item in items]

    assert texts(await memory.query(kind="observation", key="AAPL")) == ["new aapl", "old aapl"]
    recent_aapl = await memory.query(kind="observation", key="AAPL", since=T0 + 50)
    assert texts(recent_aapl) == ["new aapl"]
    assert texts(await memory.query(key="AAPL", limit=2)) == ["new note", "new aapl"]
    for since in (
        timedelta(seconds=60),
        datetime.fromtimestamp(T0 + 50, UTC),
        datetime.fromtimestamp(T0 + 50),  # naive: local time
    ):
        assert len(await memory.query(since=since)) == 3, since


async def test_text_search_ranks_the_best_match_first(memory: Memory):
    await memory.add("note", "volume was light today", key="MSFT")
    await memory.add("note", "AAPL breakout: AAPL above resistance, AAPL volume strong")
    await memory.add("note", "aapl mentioned once among many other words about markets")
    found = await memory.query("aapl")
    assert [item.content[:4] for item in found] == ["AAPL", "aapl"]
    assert [item.key for item in await memory.query("VOLUME light")] == ["MSFT"]


async def test_text_search_sees_keys_and_nested_dict_keys_and_values(memory: Memory):
    await memory.add("signal", {"symbol": "NVDA", "why": {"momentum": ["strong", 3]}}, key="chips")
    for words in ("nvda", "momentum strong", "3", "chips", "why symbol"):
        assert len(await memory.query(words)) == 1, words
    assert await memory.query("momentum weak") == []  # every word must match


@pytest.mark.parametrize(
    "hostile",
    [
        'AND OR " * ( NEAR',
        '"',
        "*",
        "NEAR(a b, 2)",
        "a:b",
        "-x ^y",
        "col:aapl",
        "'; DROP TABLE items",
    ],
)
async def test_hostile_text_is_searched_as_words_never_as_syntax(memory: Memory, hostile: str):
    await memory.add("note", "the NEAR side of AND OR logic for aapl")
    await memory.query(hostile)  # no FTS5 syntax error, whatever the words


async def test_fts_operators_in_text_are_plain_words(memory: Memory):
    await memory.add("note", "the near side of and or logic")
    await memory.add("note", "something else")
    assert [item.content for item in await memory.query('AND OR " * ( NEAR')] == [
        "the near side of and or logic"
    ]


async def test_text_without_words_means_no_text_filter(memory: Memory):
    await memory.add("note", "one")
    await memory.add("note", "two")
    assert len(await memory.query("*** (( ''")) == 2


async def test_expired_items_never_come_back_and_leave_the_file_later(
    memory: Memory, store: MemoryStore, clock: Clock, db: Path
):
    await memory.add("quote", "short-lived", ttl=5)
    await memory.add("quote", "forever")
    clock.advance(6)
    assert [item.content for item in await memory.query()] == ["forever"]
    assert [item.content for item in memory.recent()] == ["forever"]
    assert await memory.query("short lived") == []
    assert rows(db) == 2  # purged lazily: the first write purged before the item existed

    clock.advance(60)  # past the purge interval: the next write purges
    await memory.add("quote", "trigger")
    assert rows(db) == 2
    assert store.statistics().purged == 1
    with sqlite3.connect(db) as conn:  # its text left the full-text index too
        assert conn.execute("SELECT count(*) FROM items_fts").fetchone()[0] == 2


async def test_default_ttl_applies_when_add_gives_none(store: MemoryStore, clock: Clock):
    memory = Memory(store, "planner", default_ttl=10)
    item = await memory.add("quote", "x")
    kept = await memory.add("quote", "y", ttl=1000)
    assert item.expires == T0 + 10
    clock.advance(11)
    assert await memory.query() == [kept]


async def test_short_term_memory_keeps_the_newest_and_filters_by_kind(store: MemoryStore):
    memory = Memory(store, "planner", short_term_size=3)
    for n in range(5):
        await memory.add("even" if n % 2 == 0 else "odd", n)
    assert [item.content for item in memory.recent()] == [4, 3, 2]
    assert [item.content for item in memory.recent(2)] == [4, 3]
    assert [item.content for item in memory.recent(kind="even")] == [4, 2]
    assert len(await memory.query(limit=10)) == 5  # the file keeps everything


async def test_non_durable_items_stay_out_of_the_file_but_match_queries(
    memory: Memory, clock: Clock, db: Path
):
    await memory.add("note", "durable aapl")
    clock.advance(1)
    scratch = await memory.add("note", "scratch aapl", durable=False)
    assert scratch.durable is False
    assert rows(db) == 1
    assert [item.content for item in await memory.query()] == ["scratch aapl", "durable aapl"]
    assert [item.content for item in await memory.query("scratch")] == ["scratch aapl"]
    assert await memory.query(kind="other") == []
    assert len(await memory.query(limit=1)) == 1


async def test_items_survive_a_restart_and_short_term_starts_empty(db: Path, clock: Clock):
    async with MemoryStore(db, clock=clock) as store:
        await Memory(store, "planner").add("note", "remember me", key="k")
    async with MemoryStore(db, clock=clock) as store:
        memory = Memory(store, "planner")
        assert memory.recent() == []
        [item] = await memory.query("remember")
        assert (item.content, item.key) == ("remember me", "k")
        assert store.statistics().items == 1


async def test_query_sees_own_items_by_default_others_by_name_every_agent_with_star(
    store: MemoryStore,
):
    planner, scout = Memory(store, "planner"), Memory(store, "scout")
    await planner.add("note", "planner's")
    await scout.add("note", "scout's")
    assert [item.content for item in await planner.query()] == ["planner's"]
    assert [item.content for item in await planner.query(agent="scout")] == ["scout's"]
    assert {item.agent for item in await planner.query(agent="*")} == {"planner", "scout"}


async def test_forget_removes_an_item_everywhere(memory: Memory, db: Path):
    kept = await memory.add("note", "keep")
    gone = await memory.add("note", "gone")
    scratch = await memory.add("note", "scratch", durable=False)
    assert await memory.forget(gone.id) is True
    assert await memory.forget(scratch.id) is True
    assert await memory.forget(gone.id) is False
    assert await memory.query() == [kept]
    assert memory.recent() == [kept]
    assert rows(db) == 1


BAD_CALLS: list[tuple[str, Callable[[Memory], Any], str]] = [
    ("kind int", lambda m: m.add(3, "x"), "kind=3 (int)"),
    ("kind empty", lambda m: m.add("", "x"), "non-empty str"),
    ("key int", lambda m: m.add("note", "x", key=5), "key=5"),
    ("ttl negative", lambda m: m.add("note", "x", ttl=-1), "seconds > 0"),
    ("ttl zero", lambda m: m.add("note", "x", ttl=0), "seconds > 0"),
    ("ttl text", lambda m: m.add("note", "x", ttl="1h"), "ttl='1h' (str)"),
    ("content object", lambda m: m.add("note", object()), "type object is not JSON"),
    ("content set", lambda m: m.add("note", {"s": {1, 2}}), "type set is not JSON"),
    ("content nan", lambda m: m.add("note", float("nan")), "cannot be stored as JSON"),
    ("meta list", lambda m: m.add("note", "x", meta=[1]), "meta=[1] (list)"),
    ("meta datetime", lambda m: m.add("note", "x", meta={"t": datetime.now()}), "isoformat"),
    ("query kind", lambda m: m.query(kind=3), "kind=3 (int)"),
    ("query text", lambda m: m.query(text=["aapl"]), "text=['aapl'] (list)"),
    ("since word", lambda m: m.query(since="yesterday"), "timedelta(hours=1)"),
    ("since bool", lambda m: m.query(since=True), "since=True (bool)"),
    ("limit zero", lambda m: m.query(limit=0), "from 1 to 1000"),
    ("limit huge", lambda m: m.query(limit=10_000), "from 1 to 1000"),
    ("limit float", lambda m: m.query(limit=2.5), "limit=2.5 (float)"),
    ("agent empty", lambda m: m.query(agent=""), "agent=''"),
    ("decision list", lambda m: m.record_decision("AAPL", ["buy"]), "{'action': 'buy'"),
    ("decision key", lambda m: m.record_decision(None, {"action": "buy"}), "key=None"),
    ("dup decision", lambda m: m.is_duplicate("AAPL", "buy"), "decision='buy' (str)"),
    ("window", lambda m: m.is_duplicate("AAPL", {}, window=0), "window=0"),
    ("fields str", lambda m: m.is_duplicate("AAPL", {}, fields="action"), "list of field"),
    ("outcome", lambda m: m.mark_executed("nope", outcome=object()), "outcome cannot"),
    ("unknown id", lambda m: m.mark_executed("nope"), "no memory item has id 'nope'"),
    ("stats since", lambda m: m.execution_stats(since="today"), "since='today'"),
]


@pytest.mark.parametrize(
    ("call", "message"), [c[1:] for c in BAD_CALLS], ids=[c[0] for c in BAD_CALLS]
)
async def test_bad_arguments_raise_a_helpful_error_and_write_nothing(
    memory: Memory, store: MemoryStore, db: Path, call, message: str
):
    with pytest.raises(MemoryQueryError) as raised:
        await call(memory)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert memory.recent() == []
    assert store.statistics().writes == 0
    assert await memory.query(agent="*") == []


def test_bad_memory_settings_raise(store: MemoryStore):
    with pytest.raises(MemoryQueryError, match="short_term_size=0"):
        Memory(store, "planner", short_term_size=0)
    with pytest.raises(MemoryQueryError, match="default_ttl=-5"):
        Memory(store, "planner", default_ttl=-5)
    with pytest.raises(MemoryQueryError, match="agent_id=''"):
        Memory(store, "")


async def test_a_repeated_action_within_the_window_is_a_duplicate(memory: Memory, clock: Clock):
    assert await memory.is_duplicate("AAPL", {"action": "buy"}) is False  # nothing decided yet
    await memory.record_decision("AAPL", {"action": "buy", "qty": 10})
    clock.advance(299)
    assert await memory.is_duplicate("AAPL", {"action": "buy", "qty": 20}) is True
    assert await memory.is_duplicate("AAPL", {"action": "sell"}) is False
    assert await memory.is_duplicate("MSFT", {"action": "buy"}) is False
    assert (
        await memory.is_duplicate("AAPL", {"action": "buy", "qty": 20}, fields=("action", "qty"))
        is False
    )
    clock.advance(2)  # now past the 300 s window
    assert await memory.is_duplicate("AAPL", {"action": "buy", "qty": 10}) is False
    assert await memory.is_duplicate("AAPL", {"action": "buy"}, window=600) is True


async def test_only_the_latest_decision_counts_for_duplicates(memory: Memory, clock: Clock):
    await memory.record_decision("AAPL", {"action": "buy"})
    clock.advance(1)
    await memory.record_decision("AAPL", {"action": "hold"})
    assert await memory.is_duplicate("AAPL", {"action": "buy"}) is False
    assert (await memory.last_decision("AAPL")).content == {"action": "hold"}
    assert await memory.last_decision("MSFT") is None


async def test_decisions_record_evidence_and_execution(memory: Memory, clock: Clock):
    decision = await memory.record_decision(
        "AAPL", {"action": "buy", "qty": 10}, evidence={"signal": "breakout"}
    )
    assert (decision.kind, decision.key, decision.meta) == (
        "decision",
        "AAPL",
        {"evidence": {"signal": "breakout"}},
    )
    clock.advance(3)
    done = await memory.mark_executed(decision.id, outcome={"filled": 10, "px": 187.2})
    assert (done.executed_at, done.outcome) == (T0 + 3, {"filled": 10, "px": 187.2})
    assert await memory.recent_decisions("AAPL") == [done]
    assert memory.recent() == [done]


async def test_short_term_decisions_can_be_executed_and_odd_ones_are_never_duplicates(
    memory: Memory, db: Path
):
    scratch = await memory.add("decision", {"action": "buy"}, key="AAPL", durable=False)
    done = await memory.mark_executed(scratch.id, outcome="filled")
    assert (done.executed_at, done.outcome, done.durable) == (T0, "filled", False)
    assert await memory.recent_decisions("AAPL") == [done]
    assert rows(db) == 0
    await memory.add("decision", "buy", key="AAPL")  # not a dict: no field to compare
    assert await memory.is_duplicate("AAPL", {"action": "buy"}) is False


async def test_execution_stats_count_decisions_per_action(memory: Memory, clock: Clock):
    buys = [await memory.record_decision("AAPL", {"action": "buy"}) for _ in range(3)]
    await memory.record_decision("AAPL", {"action": "sell"})
    await memory.record_decision("MSFT", {"action": "buy"})
    await memory.record_decision("MSFT", {"note": "no action field"})
    await memory.add("note", {"action": "not a decision"})
    for item in buys[:2]:
        await memory.mark_executed(item.id)

    stats = await memory.execution_stats()
    assert (stats.total, stats.executed, stats.pending) == (6, 2, 4)
    assert stats.by_action == {"buy": 4, "sell": 1}
    assert stats.execution_rate == pytest.approx(2 / 6)
    aapl = await memory.execution_stats("AAPL")
    assert (aapl.total, aapl.execution_rate, aapl.by_action) == (4, 0.5, {"buy": 3, "sell": 1})
    clock.advance(10)
    assert (await memory.execution_stats(since=timedelta(seconds=5))).total == 0
    empty = await Memory(memory.store, "other").execution_stats()
    assert (empty.total, empty.execution_rate, empty.by_action) == (0, 0.0, {})


async def test_statistics_count_writes_queries_and_items(memory: Memory, store: MemoryStore):
    item = await memory.add("note", "a")
    await memory.add("note", "b")
    await memory.query()
    await memory.forget(item.id)
    stats = store.statistics()
    assert (stats.items, stats.writes, stats.queries, stats.purged) == (1, 3, 1, 0)
    assert stats.to_dict()["path"] == str(store.path)


async def test_aclose_is_idempotent_and_a_closed_store_says_so(db: Path):
    store = MemoryStore(db)
    memory = Memory(store, "planner")
    await memory.add("note", "x")
    await store.aclose()
    await store.aclose()
    with pytest.raises(LoomError, match="is closed"):
        await memory.query()


async def test_a_file_from_a_newer_loom_is_refused(db: Path):
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 99")
    async with MemoryStore(db) as store:
        with pytest.raises(LoomError, match="schema 99, newer"):
            await Memory(store, "planner").query()


async def test_an_unusable_path_raises_a_loom_error_naming_it(tmp_path: Path):
    async with MemoryStore(tmp_path) as store:  # a folder, not a file
        with pytest.raises(LoomError, match=f"cannot open the memory file {tmp_path}"):
            await Memory(store, "planner").query()


WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from loom_kernel.capabilities.memory import Memory, MemoryStore

    async def main(path, name):
        Path(f"{path}.{name}.ready").touch()
        deadline = time.monotonic() + 10
        while not Path(f"{path}.go").exists():  # both writers start together
            if time.monotonic() > deadline:
                sys.exit("no go signal")
            await asyncio.sleep(0.002)
        async with MemoryStore(path) as store:
            memory = Memory(store, name)
            for n in range(200):
                await memory.add("tick", {"writer": name, "n": n})

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def signal(path: Path) -> None:
    path.touch()


@pytest.mark.multiprocess
async def test_two_processes_writing_one_file_concurrently_lose_nothing(db: Path):
    db.parent.mkdir(parents=True)
    procs = [
        await asyncio.create_subprocess_exec(
            PYTHON, "-c", WRITER, str(db), name, env=python_env(), stderr=asyncio.subprocess.PIPE
        )
        for name in ("w1", "w2")
    ]
    await wait_until(lambda: all(Path(f"{db}.{n}.ready").exists() for n in ("w1", "w2")))
    signal(Path(f"{db}.go"))
    for proc in procs:
        _, err = await asyncio.wait_for(proc.communicate(), 20)
        assert proc.returncode == 0, err.decode()

    async with MemoryStore(db) as store:
        items = await Memory(store, "reader").query(agent="*", limit=1000)
    seen = {(item.content["writer"], item.content["n"]) for item in items}
    assert seen == {(w, n) for w in ("w1", "w2") for n in range(200)}


# -- through the runtime: ctx.memory ------------------------------------------------------


async def test_agent_memory_survives_a_runtime_restart(project: Path) -> None:
    from loom_kernel import Agent, on_event, open_runtime

    (project / "loom.toml").write_text('[memory]\npath = "state/mem.db"\nshort_term_size = 5\n')

    class Planner(Agent):
        @on_event("plan.decide")
        async def decide(self, event, ctx):
            item = await ctx.memory.record_decision(event.data["symbol"], {"action": "BUY"})
            await ctx.reply(event, item.id)

    async with open_runtime() as rt:
        await rt.start(Planner("planner"))
        decision_id = (await rt.request("plan.decide", {"symbol": "AAPL"})).data
        assert rt.agents["planner"].ctx.memory.recent(1)[0].id == decision_id
        await rt.memory.add("note", "runtime-level note about AAPL")
    assert (project / "state" / "mem.db").is_file()

    async with open_runtime() as rt:
        await rt.start(Planner("planner"))
        memory = rt.agents["planner"].ctx.memory
        assert memory.recent() == []  # short-term memory does not outlive its process
        last = await memory.last_decision("AAPL")
        assert last is not None and last.id == decision_id
        assert await memory.is_duplicate("AAPL", {"action": "BUY"})
        notes = await rt.memory.query("note")  # rt.memory keeps its id across restarts
        assert [item.content for item in notes] == ["runtime-level note about AAPL"]
        everyone = await memory.query("AAPL", agent="*")
        assert {item.kind for item in everyone} == {"decision", "note"}
        assert [item.kind for item in await memory.query("AAPL")] == ["decision"]
