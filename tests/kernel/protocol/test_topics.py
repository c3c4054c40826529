"""Topic names and wildcard patterns (SPEC Kernel 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loom_kernel.errors import TopicError
from loom_kernel.protocol.topics import (
    MAX_TOPIC_LENGTH,
    Pattern,
    compile_pattern,
    topic_matches,
    validate_topic,
)

# -- the wildcard table ----------------------------------------------------------------
# The rows live in docs/topic-table.json: the JavaScript SDK's tests check the same file.

TABLE = json.loads((Path(__file__).parents[3] / "docs" / "topic-table.json").read_text())
MATCHES = [tuple(row) for row in TABLE["matches"]]
NON_MATCHES = [tuple(row) for row in TABLE["non_matches"]]


@pytest.mark.parametrize(("pattern", "topic"), MATCHES)
def test_pattern_matches_topic(pattern: str, topic: str) -> None:
    assert topic_matches(pattern, topic)
    assert compile_pattern(pattern).matches(topic)


@pytest.mark.parametrize(("pattern", "topic"), NON_MATCHES)
def test_pattern_does_not_match_topic(pattern: str, topic: str) -> None:
    assert not topic_matches(pattern, topic)
    assert not compile_pattern(pattern).matches(topic)


def test_trailing_wildcard_matches_one_or_more_segments() -> None:
    assert topic_matches("market.price.*", "market.price.BTC")
    assert topic_matches("market.price.*", "market.price.BTC.spot")


def test_trailing_wildcard_does_not_match_its_parent() -> None:
    assert not topic_matches("market.price.*", "market.price")


def test_wildcard_does_not_match_sibling_prefix() -> None:
    assert not topic_matches("market.price.*", "market.prices.X")


def test_middle_wildcard_matches_exactly_one_segment() -> None:
    assert topic_matches("market.*.BTC", "market.price.BTC")
    assert not topic_matches("market.*.BTC", "market.BTC")
    assert not topic_matches("market.*.BTC", "market.price.spot.BTC")


def test_exact_topic_does_not_match_longer_byte_prefix() -> None:
    assert not topic_matches("market.price.BTC", "market.price.BTCUSD")


# -- the prefix ZeroMQ filters on ------------------------------------------------------


@pytest.mark.parametrize(("pattern", "prefix"), [tuple(row) for row in TABLE["prefixes"]])
def test_pattern_prefix(pattern: str, prefix: str) -> None:
    assert compile_pattern(pattern).prefix == prefix


def test_pattern_is_exact_only_without_wildcards() -> None:
    assert compile_pattern("market.price.BTC").is_exact
    assert not compile_pattern("market.price.*").is_exact
    assert not compile_pattern("market.*.BTC").is_exact


def test_compiled_patterns_compare_by_text() -> None:
    assert compile_pattern("a.*") == Pattern("a.*")
    assert hash(compile_pattern("a.*")) == hash(Pattern("a.*"))
    assert compile_pattern("a.*") != compile_pattern("a.b")
    assert compile_pattern("a.*") != "a.*"
    assert repr(compile_pattern("a.*")) == "Pattern('a.*')"


def test_compile_pattern_is_cached() -> None:
    assert compile_pattern("cache.me.*") is compile_pattern("cache.me.*")


# -- naming rules ----------------------------------------------------------------------

BAD_NAMES = [tuple(row) for row in TABLE["bad_names"]]


@pytest.mark.parametrize(("name", "rule"), BAD_NAMES)
def test_bad_topic_is_rejected_naming_the_rule(name: str, rule: str) -> None:
    with pytest.raises(TopicError, match=rule):
        validate_topic(name)


@pytest.mark.parametrize(("name", "rule"), BAD_NAMES)
def test_bad_pattern_is_rejected_naming_the_rule(name: str, rule: str) -> None:
    with pytest.raises(TopicError, match=rule):
        compile_pattern(name)
    with pytest.raises(TopicError, match=rule):
        topic_matches(name, "market.price")


@pytest.mark.parametrize("topic", ["market.*", "*", "market.*.BTC", "*.price"])
def test_wildcard_in_published_topic_is_rejected(topic: str) -> None:
    with pytest.raises(TopicError, match="wildcards belong in subscription patterns"):
        validate_topic(topic)


@pytest.mark.parametrize("value", [None, 42, b"market.price", ["market"]])
def test_non_str_topic_and_pattern_are_rejected(value: object) -> None:
    kind = type(value).__name__
    with pytest.raises(TopicError, match=f"topic must be a str, got {kind}"):
        validate_topic(value)  # type: ignore[arg-type]
    with pytest.raises(TopicError, match=f"pattern must be a str, got {kind}"):
        compile_pattern(value)  # type: ignore[arg-type]
    with pytest.raises(TopicError, match=f"pattern must be a str, got {kind}"):
        Pattern(value)  # type: ignore[arg-type]


def test_topic_at_max_length_is_valid() -> None:
    topic = "a" * MAX_TOPIC_LENGTH
    assert validate_topic(topic) == topic
    assert compile_pattern(topic).matches(topic)


def test_topic_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        validate_topic("")


@pytest.mark.parametrize(
    "topic", ["market.price.BTC", "a", "A-b_c:d@e/f.0", "loom.reply.rt-abc.agent-1"]
)
def test_valid_topic_is_returned(topic: str) -> None:
    assert validate_topic(topic) == topic


# -- properties: the matcher against a reference, and the prefix it promises -----------

_segments = st.sampled_from(["a", "b", "ab", "a-b", "B", "x:1"])
_topics = st.lists(_segments, min_size=1, max_size=6).map(".".join)
_patterns = st.lists(st.one_of(_segments, st.just("*")), min_size=1, max_size=6).map(".".join)


def _reference_match(pattern: str, topic: str) -> bool:
    """The SPEC's rule, written as plainly as possible."""
    want, got = pattern.split("."), topic.split(".")
    if want[-1] == "*":
        if len(got) < len(want):
            return False
        want = want[:-1]
        got = got[: len(want)]
    elif len(got) != len(want):
        return False
    return all(w in ("*", g) for w, g in zip(want, got, strict=True))


@given(pattern=_patterns, topic=_topics)
def test_matcher_agrees_with_reference(pattern: str, topic: str) -> None:
    assert topic_matches(pattern, topic) == _reference_match(pattern, topic)


@given(pattern=_patterns, topic=_topics)
def test_every_matched_topic_starts_with_the_zmq_prefix(pattern: str, topic: str) -> None:
    compiled = compile_pattern(pattern)
    if compiled.matches(topic):
        assert topic.encode().startswith(compiled.prefix.encode())


@given(topic=_topics, other=_topics)
def test_exact_pattern_matches_only_itself(topic: str, other: str) -> None:
    assert topic_matches(topic, topic)
    assert topic_matches(topic, other) == (topic == other)


@given(topic=_topics)
def test_trailing_wildcard_matches_every_extension(topic: str) -> None:
    assert topic_matches(topic + ".*", topic + ".x")
    assert topic_matches(topic + ".*", topic + ".x.y")
    assert not topic_matches(topic + ".*", topic)


@pytest.mark.parametrize("topic", ["market.price.", "market..price", "market.price.*", ""])
def test_topic_matches_rejects_an_invalid_topic(topic: str) -> None:
    with pytest.raises(TopicError):
        topic_matches("market.price.*", topic)
