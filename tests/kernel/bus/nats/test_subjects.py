"""Loom topics and patterns as NATS subjects (issue 25, part 2)."""

from __future__ import annotations

import pytest

from loom_kernel.bus.nats.subjects import pattern_subject, subject_topic, topic_subject
from loom_kernel.errors import TopicError


@pytest.mark.parametrize(
    ("pattern", "subject"),
    [
        ("market.price.BTC", "market.price.BTC"),
        ("market.*.BTC", "market.*.BTC"),
        ("market.price.*", "market.price.>"),
        ("*", ">"),
        ("*.price.*", "*.price.>"),
        ("a.*.c.*", "a.*.c.>"),
        ("a-b.c_d.e:f.g@h.i/j", "a-b.c_d.e:f.g@h.i/j"),
    ],
)
def test_a_pattern_maps_to_its_subject(pattern: str, subject: str) -> None:
    assert pattern_subject(pattern) == subject


def test_a_topic_is_its_own_subject_and_back() -> None:
    assert topic_subject("orders.new.AAPL") == "orders.new.AAPL"
    assert subject_topic("orders.new.AAPL") == "orders.new.AAPL"


@pytest.mark.parametrize(
    ("name", "rule"),
    [
        ("$SYS.x", "NATS keeps those subjects"),
        ("$JS.API.x", "NATS keeps those subjects"),
        ("orders.>", "'>'"),
        ("orders new", "a space"),
        ("orders.\tx", "a tab"),
        ("orders.\nx", "a line break"),
        ("orders..new", "empty segment"),
        ("orders.", "empty segment"),
    ],
)
def test_what_nats_forbids_is_refused_naming_the_rule(name: str, rule: str) -> None:
    with pytest.raises(TopicError, match=rule):
        topic_subject(name)
    with pytest.raises(TopicError, match=rule):
        pattern_subject(name)


def test_a_subject_loom_cannot_name_is_refused_on_the_way_in() -> None:
    with pytest.raises(TopicError, match="segment"):
        subject_topic("weird.#.x")
