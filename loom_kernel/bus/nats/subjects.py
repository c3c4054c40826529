"""Loom topics and patterns as NATS subjects, and back.

Both are dotted names, so a topic is its own subject. Patterns differ only in their
wildcards: NATS's ``*`` matches one token anywhere, as Loom's middle ``*`` does, and its
``>`` matches one or more trailing tokens, as Loom's trailing ``*`` does:

=====================  =====================
Loom                   NATS
=====================  =====================
``market.price.BTC``   ``market.price.BTC``
``market.*.BTC``       ``market.*.BTC``
``market.price.*``     ``market.price.>``
``*``                  ``>``
=====================  =====================

What NATS forbids or reads otherwise (whitespace, ``>``, a leading ``$`` for its system
subjects) is refused first with NATS's rule named, then Loom's own topic rules apply
(:mod:`loom_kernel.protocol.topics`: no empty segment, which NATS would silently drop).
"""

from __future__ import annotations

from ...errors import TopicError
from ...protocol.topics import compile_pattern, validate_topic

__all__ = ["pattern_subject", "subject_topic", "topic_subject"]

_FORBIDDEN = {" ": "a space", "\t": "a tab", "\r": "a line break", "\n": "a line break",
              ">": "'>'"}  # fmt: skip


def _check_nats(text: str, what: str) -> None:
    if text.startswith("$"):
        raise TopicError(
            f"{what} {text!r} starts with '$': NATS keeps those subjects for itself "
            "($SYS, $JS): rename it"
        )
    for char, name in _FORBIDDEN.items():
        if char in text:
            raise TopicError(f"{what} {text!r} holds {name}, which a NATS subject cannot")


def topic_subject(topic: str) -> str:
    """The NATS subject of a topic (the same text, checked against both rule sets).

    Raises:
        TopicError: the topic breaks Loom's rules or NATS's (the message names the rule).
    """
    if isinstance(topic, str):
        _check_nats(topic, "topic")
    return validate_topic(topic)


def pattern_subject(pattern: str) -> str:
    """The NATS subscription subject of a Loom pattern (a trailing ``*`` becomes ``>``).

    >>> pattern_subject("market.price.*"), pattern_subject("market.*.BTC")
    ('market.price.>', 'market.*.BTC')

    Raises:
        TopicError: the pattern breaks Loom's rules or NATS's.
    """
    if isinstance(pattern, str):
        _check_nats(pattern, "pattern")
    compile_pattern(pattern)
    if pattern == "*":
        return ">"
    if pattern.endswith(".*"):
        return pattern[:-1] + ">"
    return pattern


def subject_topic(subject: str) -> str:
    """The Loom topic a NATS subject carries (checked: a NATS client outside Loom may
    publish on subjects Loom cannot name).

    Raises:
        TopicError: the subject is not a valid Loom topic.
    """
    return validate_topic(subject)
