"""The ``web-search`` MCP server: BM25 over the offline corpus, and over stdio through Loom."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from demo.market_analyst.search_server import (
    CORPUS,
    Article,
    LiveSearch,
    NewsIndex,
    SearchError,
    load_corpus,
    tokenize,
)
from demo.market_analyst.settings import REPLAY_SYMBOLS, SIM_SYMBOLS
from loom_kernel import Runtime, ToolError, open_runtime
from loom_kernel.config import parse_config
from tests.conftest import REPO

pytestmark = pytest.mark.timeout(60)

SERVER = {
    "command": "python",
    "args": ["-m", "demo.market_analyst.search_server"],
    "cwd": str(REPO),
}


def article(symbol: str, date: str, title: str, summary: str = "") -> Article:
    return Article(symbol, date, title, summary, f"https://news.example/{date}/{title[:8]}")


ARTICLES = [
    article("AAPL", "2012-01-24", "iPhone sales double", "Record iPhone sales in every region."),
    article("AAPL", "2012-07-24", "iPhone sales slow", "Buyers wait for the next phone."),
    article("AAPL", "2012-03-07", "New tablet with a sharper display"),
    article("AAPL", "2011-06-06", "Online sync service unveiled"),
    article("MSFT", "2012-10-26", "New Windows launched", "Sales of the phone software lag."),
]


# -- ranking, without a server ----------------------------------------------------------


def test_tokenize_drops_stop_words_case_and_plurals() -> None:
    assert tokenize("The iPhone SALES beat forecasts, and stock news!") == [
        "iphone",
        "sale",
        "beat",
        "forecast",
    ]
    assert tokenize("business class") == ["business", "class"]  # -ss is no plural


def test_more_matching_words_rank_first() -> None:
    hits = NewsIndex(ARTICLES).search("iphone sales", symbol="AAPL")
    assert [h.title for h in hits[:2]] == ["iPhone sales double", "iPhone sales slow"]
    assert hits[0].score > hits[1].score > hits[2].score == 0
    assert hits[0].snippet == "Record iPhone sales in every region."


def test_with_a_symbol_unmatched_headlines_follow_newest_first() -> None:
    hits = NewsIndex(ARTICLES).search("display", symbol="aapl", limit=10)
    assert [h.date for h in hits] == ["2012-03-07", "2012-07-24", "2012-01-24", "2011-06-06"]
    assert [h.score > 0 for h in hits] == [True, False, False, False]


def test_without_a_symbol_only_matching_headlines_come_back() -> None:
    hits = NewsIndex(ARTICLES).search("phone sales")
    assert {h.url for h in hits} == {ARTICLES[0].url, ARTICLES[1].url, ARTICLES[4].url}
    assert NewsIndex(ARTICLES).search("nothing matches this") == []


def test_before_keeps_headlines_of_that_day_and_earlier() -> None:
    hits = NewsIndex(ARTICLES).search("iphone sales", symbol="AAPL", before="2012-03-07")
    assert [h.date for h in hits] == ["2012-01-24", "2012-03-07", "2011-06-06"]
    with pytest.raises(SearchError, match="before must be a date YYYY-MM-DD, got '03/07/2012'"):
        NewsIndex(ARTICLES).search("x", before="03/07/2012")


def test_limit_and_unknown_symbol() -> None:
    index = NewsIndex(ARTICLES)
    assert len(index.search("iphone", symbol="AAPL", limit=1)) == 1
    assert index.search("iphone", symbol="NOPE") == []


def test_the_corpus_is_illustrative_and_covers_every_demo_symbol() -> None:
    document = json.loads(CORPUS.read_text())
    assert document["illustrative"] is True
    assert "not real news" in document["notice"]
    articles = load_corpus()
    for symbol in (*REPLAY_SYMBOLS, *SIM_SYMBOLS):
        mine = [a for a in articles if a.symbol == symbol]
        assert 25 <= len(mine) <= 40, symbol
        assert all("2011-01-01" <= a.date <= "2013-12-31" for a in mine), symbol
    urls = [a.url for a in articles]
    assert len(set(urls)) == len(urls)
    assert all(url.startswith("https://news.example/") for url in urls)


# -- the live backend, with a stand-in for the ddgs package --------------------------


class FakeDDGS:
    rows = [
        {"date": "2013-09-23T10:00:00+00:00", "title": "New", "body": "b1", "url": "u1"},
        {"date": 1_325_376_000, "title": "Epoch", "body": "b2", "url": "u2"},  # 2012-01-01
        {"date": "2014-01-02T00:00:00+00:00", "title": "Later", "body": "b3", "url": "u3"},
        {"date": None, "title": "Undated", "body": "b4", "url": "u4"},
    ]
    queries: list[tuple[str, int]] = []

    def news(self, query: str, max_results: int) -> list[dict[str, Any]]:
        self.queries.append((query, max_results))
        return self.rows


def test_live_backend_filters_by_date_and_ranks_by_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ddgs", types.SimpleNamespace(DDGS=FakeDDGS))
    hits = LiveSearch().search("earnings", symbol="AAPL", limit=5, before="2013-12-31")
    assert FakeDDGS.queries[-1] == ("AAPL earnings", 15)
    assert [(h.title, h.date, h.score) for h in hits] == [
        ("New", "2013-09-23", 1.0),
        ("Epoch", "2012-01-01", 0.5),
    ]
    assert len(LiveSearch().search("AAPL earnings", limit=3)) == 3
    assert FakeDDGS.queries[-1] == ("AAPL earnings", 3)


# -- over stdio, through Loom -----------------------------------------------------------


async def open_with(project: Path, server: dict[str, Any]) -> Runtime:
    config = parse_config({"mcp": {"web-search": server}}, path=project / "loom.toml")
    return await open_runtime(config)


@pytest.fixture
async def search_rt(project: Path) -> AsyncIterator[Runtime]:
    rt = await open_with(project, SERVER)
    try:
        yield rt
    finally:
        await rt.aclose()


async def test_search_over_stdio_returns_ranked_items_of_the_symbol(search_rt: Runtime) -> None:
    hits = await search_rt.tool("web-search", {"query": "iphone sales", "symbol": "AAPL"})
    assert len(hits) == 5
    assert set(hits[0]) == {"title", "url", "date", "snippet", "score"}
    assert all("/aapl/" in hit["url"] for hit in hits)
    assert all("iphone" in (hit["title"] + hit["snippet"]).lower() for hit in hits)
    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True) and scores[-1] > 0
    assert len(await search_rt.tool("web-search", {"query": "iphone", "limit": 2})) == 2


async def test_before_and_unknown_symbols_over_stdio(search_rt: Runtime) -> None:
    args = {"query": "earnings", "symbol": "IBM", "limit": 50, "before": "2011-12-31"}
    hits = await search_rt.tool("web-search.search", args)
    assert hits and all(hit["date"] <= "2011-12-31" for hit in hits)
    assert await search_rt.tool("web-search", {"query": "earnings", "symbol": "NOPE"}) == []
    with pytest.raises(ToolError, match="before must be a date YYYY-MM-DD"):
        await search_rt.tool("web-search", {"query": "x", "before": "yesterday"})
    with pytest.raises(ToolError, match="argument 'limit'"):
        await search_rt.tool("web-search", {"query": "x", "limit": 0})


@pytest.mark.skipif(importlib.util.find_spec("ddgs") is not None, reason="ddgs is installed")
async def test_ddgs_backend_without_the_package_says_how_to_fix_it(project: Path) -> None:
    rt = await open_with(project, {**SERVER, "args": [*SERVER["args"], "--backend", "ddgs"]})
    try:
        with pytest.raises(ToolError, match=r"needs the ddgs package: `pip install ddgs`"):
            await rt.tool("web-search", {"query": "bitcoin"})
    finally:
        await rt.aclose()
