"""Topic names and wildcard patterns.

A topic is a dotted name: ``market.price.BTC``. Each segment is non-empty and made
of letters, digits, ``_``, ``-``, ``:``, ``@`` or ``/``; ``*`` is reserved for patterns.

A pattern is a topic whose segments may be ``*``:

- a trailing ``*`` matches one or more segments: ``market.price.*`` matches
  ``market.price.BTC`` and ``market.price.BTC.spot``, never ``market.price`` itself
  nor ``market.prices.X``;
- a ``*`` anywhere else matches exactly one segment: ``market.*.BTC``;
- a pattern without ``*`` matches only the identical topic.

ZeroMQ filters by byte prefix, so a subscriber asks the broker for
:attr:`Pattern.prefix` and checks every arriving topic with :meth:`Pattern.matches`.
"""

from __future__ import annotations

import re
from functools import lru_cache

from ..errors import TopicError

__all__ = ["Pattern", "compile_pattern", "topic_matches", "validate_topic"]

MAX_TOPIC_LENGTH = 255
_SEGMENT = re.compile(r"[A-Za-z0-9_\-:@/]+\Z")


def _check_segments(text: str, what: str, allow_star: bool) -> list[str]:
    if not isinstance(text, str):
        raise TopicError(f"{what} must be a str, got {type(text).__name__}")
    if not text:
        raise TopicError(f"{what} is empty: use dotted names such as 'market.price.BTC'")
    if len(text) > MAX_TOPIC_LENGTH:
        raise TopicError(f"{what} {text[:40]!r}... is longer than {MAX_TOPIC_LENGTH} characters")
    segments = text.split(".")
    for index, segment in enumerate(segments):
        if segment == "":
            raise TopicError(
                f"{what} {text!r} has an empty segment at position {index}: "
                "segments are separated by single dots, with none at either end"
            )
        if segment == "*":
            if not allow_star:
                raise TopicError(
                    f"{what} {text!r} contains '*': wildcards belong in subscription "
                    "patterns, a published topic names one concrete channel"
                )
            continue
        if not _SEGMENT.match(segment):
            if "*" in segment:
                raise TopicError(
                    f"{what} {text!r}: '*' must be a whole segment ('market.*'), "
                    f"not part of one ({segment!r})"
                )
            raise TopicError(
                f"{what} {text!r}: segment {segment!r} may only contain letters, digits "
                "and _ - : @ /"
            )
    return segments


def validate_topic(topic: str) -> str:
    """Return ``topic`` if it is a valid concrete topic, else raise :class:`TopicError`."""
    if not isinstance(topic, str):
        raise TopicError(f"topic must be a str, got {type(topic).__name__}")
    _check_topic_cached(topic)
    return topic


@lru_cache(maxsize=4096)
def _check_topic_cached(topic: str) -> None:
    _check_segments(topic, "topic", allow_star=False)


class Pattern:
    """A compiled subscription pattern.

    >>> p = compile_pattern("market.price.*")
    >>> p.matches("market.price.BTC"), p.matches("market.prices.X"), p.prefix
    (True, False, 'market.price.')
    """

    __slots__ = ("_fixed", "_min", "_open", "_segments", "prefix", "text")

    def __init__(self, text: str):
        segments = _check_segments(text, "pattern", allow_star=True)
        self.text = text
        self._segments = tuple(segments)
        self._open = segments[-1] == "*"
        # Segments that must match exactly, by position (None = any one segment).
        self._fixed = tuple(None if s == "*" else s for s in segments)
        self._min = len(segments)
        # The longest literal byte prefix ZeroMQ can filter on.
        literal = []
        for segment in segments:
            if segment == "*":
                break
            literal.append(segment)
        if len(literal) == len(segments):
            self.prefix = text
        else:
            self.prefix = ".".join(literal) + "." if literal else ""

    @property
    def is_exact(self) -> bool:
        """True when the pattern has no wildcard."""
        return "*" not in self._segments

    def matches(self, topic: str) -> bool:
        """True when ``topic`` is matched by this pattern."""
        if self.prefix == self.text:
            return topic == self.text
        if not topic.startswith(self.prefix):
            return False
        parts = topic.split(".")
        if self._open:
            if len(parts) < self._min:
                return False
        elif len(parts) != self._min:
            return False
        for want, got in zip(self._fixed, parts, strict=False):
            if want is not None and want != got:
                return False
        return True

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def compile_pattern(text: str) -> Pattern:
    """Compile (and cache) a subscription pattern; raises :class:`TopicError` if invalid."""
    if not isinstance(text, str):
        raise TopicError(f"pattern must be a str, got {type(text).__name__}")
    return _compile_cached(text)


@lru_cache(maxsize=4096)
def _compile_cached(text: str) -> Pattern:
    return Pattern(text)


def topic_matches(pattern: str, topic: str) -> bool:
    """True when ``topic`` is delivered to a subscription on ``pattern``.

    Raises :class:`TopicError` when either is invalid.

    >>> topic_matches("market.price.*", "market.price.BTC.spot")
    True
    >>> topic_matches("market.price.BTC", "market.price.BTCUSD")
    False
    """
    return compile_pattern(pattern).matches(validate_topic(topic))
