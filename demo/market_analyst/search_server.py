"""``web-search``: the demo's news search, an MCP server over stdio.

    python -m demo.market_analyst.search_server                 # offline corpus, BM25
    python -m demo.market_analyst.search_server --backend ddgs  # live news (network)

It has one tool, ``search``, which answers a list of ``{title, url, date, snippet,
score}``. The offline backend ranks ``news/corpus.json`` with BM25: illustrative
headlines written for the demo, not real news. The ``ddgs`` backend asks DuckDuckGo News
through the optional ``ddgs`` package. Declare it in ``loom.toml``::

    [mcp.web-search]
    command = "python"
    args = ["-m", "demo.market_analyst.search_server"]

stdout carries the protocol: logs go to stderr.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

import anyio.to_thread
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field
from rank_bm25 import BM25Okapi

CORPUS = Path(__file__).parent / "news" / "corpus.json"

log = logging.getLogger("web-search")

# Every headline of the corpus is stock news, so "stock" and "news" tell nothing apart: as
# query words they would only favour the few headlines that happen to use them.
STOPWORDS = frozenset(
    {"a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in"}
    | {"is", "it", "its", "of", "on", "or", "than", "that", "the", "their", "this", "to"}
    | {"was", "were", "will", "with", "news", "stock", "stocks"}
)


class SearchError(ValueError):
    """A search a backend refused or could not do; the caller gets its message."""


class Hit(BaseModel):
    """One search result."""

    title: str
    url: str
    date: str  # YYYY-MM-DD ("" when the source gave none)
    snippet: str
    score: float  # relevance: BM25 offline, 1 / rank for ddgs


@dataclass(frozen=True)
class Article:
    """One headline of the corpus."""

    symbol: str
    date: str
    title: str
    summary: str
    url: str


def tokenize(text: str) -> list[str]:
    """Lower-case words and numbers, stop words out, a plural ``s`` dropped.

    >>> tokenize("iPhone sales beat the forecasts")
    ['iphone', 'sale', 'beat', 'forecast']
    """
    words = re.findall(r"[a-z0-9]+", text.lower())
    return [_singular(word) for word in words if word not in STOPWORDS]


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def load_corpus(path: Path = CORPUS) -> list[Article]:
    """The headlines of a corpus file (``{"items": [{symbol, date, title, summary, url}]}``)."""
    document = json.loads(path.read_text(encoding="utf-8"))
    return [Article(**item) for item in document["items"]]


def parse_day(value: str) -> str:
    """``value`` checked as a ``YYYY-MM-DD`` date; ``SearchError`` says what is expected."""
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise SearchError(f"before must be a date YYYY-MM-DD, got {value!r}") from None


class NewsIndex:
    """BM25 (``BM25Okapi``) over the title and summary of every headline.

    One index over the whole corpus, so a word's weight reflects all symbols; the symbol
    and date filters apply to its scores.
    """

    name = "offline"
    description = (
        "Search the demo's offline news corpus (illustrative headlines written for the demo, "
        "not real news), ranked by BM25 over title and summary."
    )

    def __init__(self, articles: Sequence[Article]):
        if not articles:
            raise ValueError("the corpus has no headlines")
        self.articles = list(articles)
        self._bm25 = BM25Okapi([tokenize(f"{a.title} {a.summary}") for a in self.articles])

    def search(
        self, query: str, symbol: str | None = None, limit: int = 5, before: str | None = None
    ) -> list[Hit]:
        """The ``limit`` best headlines for ``query``, best first.

        With a ``symbol``, every headline of that symbol is a candidate: the query's words
        rank them, and those no word matches follow, newest first. Without one, only
        headlines matching a word are returned. ``before`` keeps headlines dated on or
        before that day (a replay sees only the news up to its market date).
        """
        day = parse_day(before) if before else None
        wanted = symbol.upper() if symbol else None
        scores = self._bm25.get_scores(tokenize(query))
        ranked = [
            (float(score), article)
            for article, score in zip(self.articles, scores, strict=True)
            if (article.symbol == wanted if wanted else score > 0)
            and (day is None or article.date <= day)
        ]
        ranked.sort(key=lambda pair: (pair[0], pair[1].date), reverse=True)
        return [
            Hit(title=a.title, url=a.url, date=a.date, snippet=a.summary, score=round(score, 4))
            for score, a in ranked[:limit]
        ]


class LiveSearch:
    """DuckDuckGo News through the ``ddgs`` package (network; the order is its ranking)."""

    name = "ddgs"
    description = "Search live news on DuckDuckGo News."

    def __init__(self) -> None:
        try:
            from ddgs import DDGS
        except ImportError:
            raise RuntimeError(
                "web-search --backend ddgs needs the ddgs package: `pip install ddgs`, "
                "or drop --backend to search the offline corpus"
            ) from None
        self._ddgs = DDGS()

    def search(
        self, query: str, symbol: str | None = None, limit: int = 5, before: str | None = None
    ) -> list[Hit]:
        day = parse_day(before) if before else None
        if symbol and symbol.lower() not in query.lower():
            query = f"{symbol} {query}"
        # ask for more when the date filter will drop some
        try:
            rows = self._ddgs.news(query, max_results=limit * 3 if day else limit)
        except Exception as exc:  # ddgs raises its own errors and httpx's
            raise SearchError(f"ddgs news search failed: {type(exc).__name__}: {exc}") from exc
        hits = []
        for row in rows:
            published = _day_of(row.get("date"))
            if day and (not published or published > day):
                continue
            hits.append(
                Hit(
                    title=str(row.get("title") or ""),
                    url=str(row.get("url") or ""),
                    date=published,
                    snippet=str(row.get("body") or ""),
                    score=round(1 / (len(hits) + 1), 4),
                )
            )
        return hits[:limit]


def _day_of(value: Any) -> str:
    """The ``YYYY-MM-DD`` of a ddgs date (an ISO string or epoch seconds), else ""."""
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC).date().isoformat()
    text = str(value or "")[:10]
    return text if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text) else ""


class SearchBackend(Protocol):
    name: str
    description: str

    def search(
        self, query: str, symbol: str | None, limit: int, before: str | None
    ) -> list[Hit]: ...


def build_server(backend: SearchBackend) -> MCPServer:
    """The ``web-search`` MCP server, its one tool answering from ``backend``."""
    server = MCPServer("web-search", instructions=backend.description)

    @server.tool(description=backend.description)
    async def search(
        query: Annotated[str, Field(description="Words to look for, e.g. 'iphone sales'.")],
        symbol: Annotated[
            str | None, Field(description="Only news about this symbol, e.g. 'AAPL'.")
        ] = None,
        limit: Annotated[int, Field(ge=1, le=50, description="Most results.")] = 5,
        before: Annotated[
            str | None, Field(description="Only news dated on or before this YYYY-MM-DD.")
        ] = None,
    ) -> list[Hit]:
        try:
            # ddgs blocks on HTTP: keep the server's loop free
            hits = await anyio.to_thread.run_sync(backend.search, query, symbol, limit, before)
        except SearchError as exc:
            log.warning("search %r failed: %s", query, exc)
            raise ToolError(str(exc)) from exc
        log.info("search %r symbol=%s before=%s: %d hits", query, symbol, before, len(hits))
        return hits

    return server


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo.market_analyst.search_server")
    parser.add_argument("--backend", choices=["offline", "ddgs"], default="offline")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="offline corpus file")
    options = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    if options.backend == "ddgs":
        try:
            backend: SearchBackend = LiveSearch()
        except RuntimeError as exc:
            parser.exit(2, f"{exc}\n")
    else:
        backend = NewsIndex(load_corpus(options.corpus))
        count = len(backend.articles)
        log.info("offline corpus %s: %d illustrative headlines", options.corpus, count)
    build_server(backend).run()


if __name__ == "__main__":
    main()
