"""The broker's judgement of every message on a CURVE bus: who may say what, as whom.

On a CURVE bus each connection proves an identity (the key pair's name: the ZAP user id,
:mod:`.zap`); the process that hosts the broker is its own identity for its in-process
clients. :class:`Guard` decides, per message, whether the broker forwards it:

- **Names.** An identity speaks for the agent and process ids it publishes as: an event's
  ``source`` and the id in ``loom.agent.<id>.…``, ``loom.log.<id>``, ``loom.client.<id>.…``,
  ``loom.trace.spans.<id>`` and ``loom.probe.<id>.…``. A name belongs to the identity that
  used it first (or that ``[acl.<identity>] agents`` reserves it for); any other identity
  publishing under it is refused. So nobody forges another process's heartbeat, ``seq`` or
  order. Events on ``replay.*`` keep the source they were recorded with and are not checked.
- **Replies.** A reply (``reply``, ``error``, ``bid``, ``award``, ``reject`` on a
  ``loom.reply.*`` inbox) is forwarded only from an identity the request was delivered to
  (one subscribed to the request's topic when the broker forwarded it), or from the inbox's
  own identity. A reply to a request the bus never carried is refused. Only the identity of
  an inbox may subscribe to it.
- **ACLs** (``[acl.<identity>]``): the topics it may publish and subscribe to, the tools it
  may call. Loom's own ``loom.*`` topics follow the fixed rules above; the control requests
  (``loom.supervisor.control``, ``loom.supervisor.logs``, ``loom.code.reload``) are for the
  operators (``[bus] operators``) and for identities whose ``publish`` names them.

Pure logic over bytes: :mod:`loom_kernel.bus.zeromq.guarded` runs it on the broker's sockets.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import msgspec

from .._bus_config import AclConfig, TenantConfig
from ..errors import ConfigError, TopicError
from ..protocol import reserved
from ..protocol.topics import Pattern, compile_pattern

__all__ = ["CONTROL_TOPICS", "Access", "Denial", "Guard"]

#: Requests only operators (or an ACL that names them) may publish.
CONTROL_TOPICS = frozenset(
    {reserved.SUPERVISOR_CONTROL, reserved.SUPERVISOR_LOGS, reserved.CODE_RELOAD}
)
#: Topics only the broker's host publishes.
_HOST_TOPICS = frozenset({reserved.BUS_BEAT, reserved.BROKER_STATS})
#: What every identity may subscribe to, whatever its ACL: a client's own plumbing.
_PUBLIC_SUBSCRIPTIONS = frozenset(
    {reserved.BUS_BEAT, reserved.TOOLS_QUERY, reserved.TOOLS_CHANGED, reserved.CODE_RELOAD}
)
_REPLY_TYPES = frozenset({"reply", "error", "bid", "award", "reject"})
#: ``loom.<kind>.<name>…`` topics whose third segment names the publisher.
_NAMED_KINDS = frozenset({"agent", "log", "client", "probe"})
MAX_NAMES = 100_000  #: names bound at most; more new ones are refused
MAX_EXPECTED = 200_000  #: requests awaiting replies, at most (the oldest are forgotten)
EXPECT_SEC = 300.0  #: how long a request's replies are expected (its ttl if shorter)
_CACHE = 20_000  #: per-identity topic verdicts kept


class _Head(msgspec.Struct):
    """The header fields the guard reads (msgspec skips the others)."""

    source: str = ""
    type: str = "event"
    id: str = ""
    correlation_id: str | None = None
    reply_to: str | None = None
    ttl_ms: int = 0


class _Beat(msgspec.Struct):
    """What the guard reads of a heartbeat's payload."""

    identity: str | None = None


class _Sizes(msgspec.Struct):
    sizes: list[int] = []


_one = msgspec.json.Decoder(_Head)
_many = msgspec.json.Decoder(list[_Head])
_beat = msgspec.json.Decoder(_Beat)
_sizes = msgspec.json.Decoder(_Sizes)


@dataclass(frozen=True)
class Access:
    """The project's ``[acl.<identity>]`` and ``[tenants.<name>]``: what a CURVE broker's
    guard applies (carried by the bus layer to wherever a broker starts)."""

    acl: Mapping[str, AclConfig] = field(default_factory=dict)
    tenants: Mapping[str, TenantConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class Denial:
    """A message the broker did not forward, and why (published on
    ``loom.security.denied.<identity>``)."""

    identity: str
    action: str  # publish, subscribe, reply, impersonate, malformed
    topic: str
    reason: str
    source: str | None = None
    #: A refused request's reply topic and correlation id: the broker answers it with an
    #: error at once, so the caller does not wait for its timeout.
    reply_to: str | None = None
    correlation_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "action": self.action,
            "topic": self.topic,
            "reason": self.reason,
            "source": self.source,
        }


class _Rules:
    """One identity's ``[acl.<identity>]`` and tenant, compiled.

    A tenant's identity may publish, subscribe and call tools under its prefix; its ACL's
    lists add to that (an ACL says where it may cross), and an unset list adds nothing.
    """

    def __init__(self, acl: AclConfig, tenant: str | None = None):
        self.tenant = tenant
        self.agents = list(acl.agents)  # globs: ids are not topics
        subscribe = (
            None
            if acl.subscribe is None
            # exact patterns are matched whole; 'a.b.*' admits prefixes starting 'a.b.'
            else [(p, True) if "*" not in p else (p[:-1], False) for p in acl.subscribe]
        )
        self.public = _PUBLIC_SUBSCRIPTIONS
        if tenant is None:
            self.publish, self.tools = _compiled(acl.publish), _compiled(acl.tools)
            self.subscribe = subscribe
            return
        self.publish = _compiled([tenant, f"{tenant}.*", *(acl.publish or [])])
        self.tools = _compiled([tenant, f"{tenant}.*", *(acl.tools or [])])
        own = [
            (tenant, True),
            (f"{tenant}.", False),
            (f"{reserved.TOOL_PREFIX}{tenant}", True),
            (f"{reserved.TOOL_PREFIX}{tenant}.", False),
            (f"{reserved.BARRIER_PREFIX}{tenant}.", False),
        ]
        self.subscribe = own + (subscribe or [])
        # another tenant's tools must not show: no loom.tools.changed
        self.public = _PUBLIC_SUBSCRIPTIONS - {reserved.TOOLS_CHANGED}

    def crosses(self, topic: str) -> bool:
        """A request on ``topic`` leaves this identity's tenant (its ACL let it)."""
        if self.tenant is None:
            return True
        tool = reserved.tool_name(topic)
        if tool is not None:
            return not _under(tool, self.tenant)
        if topic.startswith(reserved.LOOM_PREFIX):
            return False
        return not _under(topic, self.tenant)

    def may_subscribe(self, prefix: str) -> bool:
        if self.subscribe is None:
            return True
        return any(
            prefix == text if exact else prefix.startswith(text) for text, exact in self.subscribe
        )


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _rules(identity: str, acl: AclConfig, tenant: str | None) -> _Rules:
    try:
        return _Rules(acl, tenant)
    except TopicError as exc:
        raise ConfigError(f"[acl.{identity}]: {exc}") from None


def _compiled(patterns: list[str] | None) -> list[Pattern] | None:
    return None if patterns is None else [compile_pattern(p) for p in patterns]


def _matches(patterns: list[Pattern], topic: str) -> bool:
    return any(pattern.matches(topic) for pattern in patterns)


class Guard:
    """The broker's rules for one bus (see the module's docstring).

    Args:
        acl: ``[acl.<identity>]`` of the project.
        tenants: ``[tenants.<name>]`` of the project.
        host: the identity of the broker's own process (its in-process clients).
        operators: who may publish control requests (default: ``host``).
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        acl: Mapping[str, AclConfig] | None = None,
        *,
        tenants: Mapping[str, TenantConfig] | None = None,
        host: str,
        operators: Iterable[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.host = host
        self.operators = frozenset(operators if operators is not None else [host])
        acl = acl or {}
        #: identity -> its tenant's prefix
        self.tenants = {
            identity: tenant.prefix or name
            for name, tenant in (tenants or {}).items()
            for identity in tenant.identities
        }
        self._rules = {
            identity: _rules(identity, acl.get(identity, AclConfig()), self.tenants.get(identity))
            for identity in {*acl, *self.tenants}
        }
        self._clock = clock
        self._names: dict[str, str] = {}  # agent or process id -> its identity
        self._subscriptions: dict[str, Counter[str]] = {}  # identity -> prefix -> count
        self._serving: dict[str, frozenset[str]] = {}  # topic -> identities it reaches
        self._expected: dict[tuple[str, str], frozenset[str]] = {}
        self._expiry: deque[tuple[float, tuple[str, str]]] = deque()
        self._verdicts: dict[str, dict[str, str | None]] = {}  # identity -> topic -> reason
        self.denied: Counter[str] = Counter()  #: refusals by action

    # -- subscriptions --------------------------------------------------------------
    def subscribe(self, identity: str, prefix: bytes) -> Denial | None:
        """May ``identity`` subscribe to ``prefix`` (ZeroMQ's subscription bytes)?"""
        text = prefix.decode("utf-8", "replace")
        reason = self._subscription_refused(identity, text)
        if reason is not None:
            return self._deny(Denial(identity, "subscribe", text, reason))
        self._subscriptions.setdefault(identity, Counter())[text] += 1
        self._serving.clear()
        return None

    def unsubscribed(self, identity: str, prefix: bytes) -> None:
        """``identity`` dropped one subscription to ``prefix``."""
        held = self._subscriptions.get(identity)
        text = prefix.decode("utf-8", "replace")
        if held is not None and held[text] > 0:
            held[text] -= 1
            if not held[text]:
                del held[text]
            self._serving.clear()

    def _subscription_refused(self, identity: str, text: str) -> str | None:
        owner = _inbox_owner(text)
        if owner is not None:
            return self._claim(identity, owner)
        if text == reserved.security_denied(identity):
            return None  # its own refusals: every identity may hear why
        rules = self._rules.get(identity)
        if rules is None or text in rules.public or rules.may_subscribe(text):
            return None
        allowed = ", ".join(repr(p) for p in _subscribe_patterns(rules)) or "nothing"
        return (
            f"{_whose(identity, rules)} subscribe does not cover {text or '(everything)'!r} "
            f"(it allows {allowed})"
        )

    # -- publishing -----------------------------------------------------------------
    def publish(self, identity: str, frames: Sequence[bytes]) -> Denial | None:
        """May ``identity`` publish this message (an event's 3 frames, a batch's 4)?"""
        count = len(frames)
        if count not in (3, 4):
            return self._deny(
                Denial(identity, "malformed", "", f"{count} frames: a Loom event has 3, a batch 4")
            )
        try:
            topic = bytes(frames[0]).decode()
            heads = [_one.decode(frames[1])] if count == 3 else _many.decode(frames[2])
        except (UnicodeDecodeError, msgspec.DecodeError) as exc:
            return self._deny(Denial(identity, "malformed", "", f"unreadable header: {exc}"))
        if not heads:
            return self._deny(Denial(identity, "malformed", topic, "a batch of no events"))
        verdicts = self._verdicts.get(identity)
        if verdicts is None:
            verdicts = self._verdicts[identity] = {}
        if topic in verdicts:
            reason = verdicts[topic]
        else:
            reason = self._topic_refused(identity, topic)
            if len(verdicts) >= _CACHE:
                verdicts.clear()
            verdicts[topic] = reason
        if reason is not None:
            return self._deny(self._refused_topic(identity, topic, heads[0], reason))
        if not topic.startswith(reserved.REPLAY_PREFIX):
            # a batch's events mostly share one source: each distinct one is checked once
            for source in {head.source for head in heads} if count == 4 else (heads[0].source,):
                refused = self._source_refused(identity, source)
                if refused is not None:
                    return self._deny(
                        Denial(identity, "impersonate", topic, refused, source=source)
                    )
        if topic.endswith(".heartbeat") and topic.startswith("loom.agent."):
            refused = _beat_refused(identity, frames)
            if refused is not None:
                return self._deny(Denial(identity, "impersonate", topic, refused, heads[0].source))
        if topic.startswith(reserved.REPLY_PREFIX):
            for head in heads:
                if head.type in _REPLY_TYPES:
                    refused = self._reply_refused(identity, topic, head)
                    if refused is not None:
                        return self._deny(Denial(identity, "reply", topic, refused, head.source))
        for head in heads:
            if head.reply_to:
                self._expect(identity, topic, head)
        return None

    def _refused_topic(self, identity: str, topic: str, head: _Head, reason: str) -> Denial:
        # a refused request is answered only into the sender's own inbox: never a way to
        # fail another's call
        own = (
            head.type == "request"
            and bool(head.reply_to)
            and (self._names.get(_inbox_owner(head.reply_to or "") or "") == identity)
        )
        return Denial(
            identity, "publish", topic, reason, head.source or None,
            head.reply_to if own else None, head.correlation_id or head.id,
        )  # fmt: skip

    def _source_refused(self, identity: str, source: str) -> str | None:
        if not source or self._names.get(source) == identity:
            return None
        return self._claim(identity, source)

    def _topic_refused(self, identity: str, topic: str) -> str | None:
        rules = self._rules.get(identity)
        if not topic.startswith(reserved.LOOM_PREFIX):
            if rules is None or rules.publish is None or _matches(rules.publish, topic):
                return None
            return f"{_whose(identity, rules)} publish does not allow {topic!r}"
        if topic in CONTROL_TOPICS:
            if identity in self.operators or (
                rules is not None and rules.publish and _matches(rules.publish, topic)
            ):
                return None
            return (
                f"only operators ({', '.join(sorted(self.operators))}) may publish {topic}: "
                f"add {identity!r} to [bus] operators, or {topic!r} to [acl.{identity}] publish"
            )
        if topic in _HOST_TOPICS:
            return None if identity == self.host else f"only the broker's host publishes {topic}"
        tool = reserved.tool_name(topic)
        if tool is not None:
            if rules is None or rules.tools is None or _matches(rules.tools, tool):
                return None
            return f"{_whose(identity, rules)} tools does not allow calling {tool!r}"
        if (
            rules is not None
            and rules.tenant is not None
            and topic.startswith(reserved.BARRIER_PREFIX)
            and not _under(topic[len(reserved.BARRIER_PREFIX) :], rules.tenant)
        ):
            return f"a barrier of tenant {rules.tenant!r} is named under '{rules.tenant}.'"
        name = _topic_owner(topic)
        return None if name is None else self._claim(identity, name)

    def _claim(self, identity: str, name: str) -> str | None:
        """``identity`` speaks as ``name``: fine if the name is its own or nobody's yet."""
        owner = self._names.get(name)
        if owner is None:
            owner = self._reserved_for(name) or identity
            if owner == identity:
                if len(self._names) >= MAX_NAMES:
                    return f"the broker holds {MAX_NAMES} names already: {name!r} refused"
                self._names[name] = identity
                return None
        if owner == identity:
            return None
        return f"{name!r} belongs to identity {owner!r}, not {identity!r}"

    def _reserved_for(self, name: str) -> str | None:
        for identity, rules in self._rules.items():
            if any(fnmatchcase(name, glob) for glob in rules.agents):
                return identity
        return None

    # -- requests and replies -------------------------------------------------------
    def _expect(self, asker: str, topic: str, head: _Head) -> None:
        """A request (or cfp, bid, award) went out: note who may answer it (within the
        asker's tenant, unless its ACL let the request leave it)."""
        serving = self._serving.get(topic)
        if serving is None:
            serving = self._serving[topic] = frozenset(
                identity
                for identity, prefixes in self._subscriptions.items()
                if any(topic.startswith(prefix) for prefix in prefixes)
            )
        rules = self._rules.get(asker)
        if rules is not None and not rules.crosses(topic):
            tenant = rules.tenant
            serving = frozenset(i for i in serving if self.tenants.get(i) in (None, tenant))
        now = self._clock()
        life = EXPECT_SEC if not head.ttl_ms else min(EXPECT_SEC, head.ttl_ms / 1000)
        for key in {head.id, head.correlation_id}:
            if key:
                entry = (head.reply_to or "", key)
                self._expected[entry] = serving
                self._expiry.append((now + life, entry))
        self._forget(now)

    def _forget(self, now: float) -> None:
        expiry, expected = self._expiry, self._expected
        while expiry and (expiry[0][0] <= now or len(expiry) > MAX_EXPECTED):
            _, entry = expiry.popleft()
            expected.pop(entry, None)

    def _reply_refused(self, identity: str, topic: str, head: _Head) -> str | None:
        if self._names.get(_inbox_owner(topic) or "") == identity:
            return None  # an identity may always write to its own inbox
        serving = self._expected.get((topic, head.correlation_id or ""))
        if serving is None:
            return (
                f"a {head.type} to {topic} answering {head.correlation_id!r}, a request the bus "
                "did not carry (or carried over "
                f"{EXPECT_SEC:.0f} s ago)"
            )
        if identity in serving:
            return None
        to = ", ".join(sorted(serving)) or "nobody"
        return f"that request was delivered to {to}, not to {identity!r}"

    # -- bookkeeping -------------------------------------------------------------------
    def _deny(self, denial: Denial) -> Denial:
        self.denied[denial.action] += 1
        return denial

    def names(self) -> dict[str, str]:
        """The names bound so far, each to its identity."""
        return dict(self._names)


def _beat_refused(identity: str, frames: Sequence[bytes]) -> str | None:
    """A heartbeat may name only its sender's identity (the studio's tenant view reads it)."""
    try:
        if len(frames) == 3:
            payloads = [frames[2]]
        else:
            sizes, blob, at = _sizes.decode(frames[1]).sizes, bytes(frames[3]), 0
            payloads = []
            for size in sizes:
                payloads.append(blob[at : at + size])
                at += size
        claimed = {_beat.decode(payload).identity for payload in payloads if payload}
    except msgspec.DecodeError:
        return None  # not JSON: no identity in it; receivers judge the rest
    claimed.discard(None)
    if claimed and claimed != {identity}:
        named = ", ".join(sorted(map(str, claimed)))
        return f"a heartbeat naming identity {named}, sent by {identity!r}"
    return None


def _whose(identity: str, rules: _Rules) -> str:
    """Where an identity's rules come from, as a user wrote them."""
    if rules.tenant is None:
        return f"[acl.{identity}]"
    return f"tenant {rules.tenant!r} ({identity}, with [acl.{identity}])"


def _subscribe_patterns(rules: _Rules) -> list[str]:
    """An ACL's subscribe patterns as written."""
    return [text if exact else f"{text}*" for text, exact in rules.subscribe or []]


def _topic_owner(topic: str) -> str | None:
    """The publisher a ``loom.*`` topic names (``loom.agent.<id>.…`` → ``<id>``), if any."""
    parts = topic.split(".", 4)
    if len(parts) >= 3 and parts[1] in _NAMED_KINDS:
        return parts[2]
    if len(parts) >= 4 and parts[1] == "trace" and parts[2] == "spans":
        return parts[3]
    return None


def _inbox_owner(text: str) -> str | None:
    """The client whose own plumbing ``text`` is: ``loom.reply.<client>.…``,
    ``loom.probe.<client>.…`` or ``loom.eventlog.ack.<client>``."""
    for prefix in (reserved.REPLY_PREFIX, reserved.PROBE_PREFIX, "loom.eventlog.ack."):
        if text.startswith(prefix):
            client = text[len(prefix) :].split(".", 1)[0]
            return client or None
    return None
