"""The builder's palette: what a new agent of each kind looks like in Python.

Each template renders one readable, formatted module (``ruff format`` leaves it as it
is; ``tests/studio/builder`` checks it) for an :class:`AgentSpec`. The code is the
agent: the builder reads it back (:mod:`.reader`) to the same spec, and from then on
edits it surgically (:mod:`.edits`), never by rendering it again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from loom_kernel import TopicError
from loom_kernel.protocol import compile_pattern, validate_topic

__all__ = ["TEMPLATES", "AgentSpec", "class_name", "module_name", "render"]

_ID = re.compile(r"^[a-z][a-z0-9_-]*$")


@dataclass(frozen=True)
class Template:
    """A palette entry: what it needs (a subscription, an emitted topic, an LLM, a tool)."""

    name: str
    title: str
    subscribes: bool
    emits: bool
    needs: tuple[str, ...] = ()  # "llm", "tool", "gather"


TEMPLATES: dict[str, Template] = {
    t.name: t
    for t in (
        Template("producer", "Source / producer", subscribes=False, emits=True),
        Template("transform", "Transform", subscribes=True, emits=True),
        Template("llm", "LLM", subscribes=True, emits=True, needs=("llm",)),
        Template("tool", "Tool-calling", subscribes=True, emits=True, needs=("tool",)),
        Template("sink", "Sink", subscribes=True, emits=False),
        Template("responder", "Request/reply responder", subscribes=True, emits=False),
        Template("fan_in", "Fan-in aggregator", subscribes=True, emits=True, needs=("gather",)),
        Template("bidder", "Contract-net bidder", subscribes=True, emits=False),
    )
}


@dataclass(frozen=True)
class AgentSpec:
    """A new agent as the canvas describes it."""

    id: str
    template: str
    subscribe: str | None = None  # the pattern it handles
    emit: str | None = None  # the topic it emits on
    qos: str = "reliable"
    llm: str | None = None
    tool: str | None = None
    gather: tuple[str, ...] = field(default=())  # fan-in: the patterns it waits for
    interval: float = 1.0  # producer: seconds between two events

    def check(self) -> None:
        """Raises ValueError naming what is wrong and how to fix it."""
        if not _ID.match(self.id):
            raise ValueError(
                f"agent id {self.id!r}: use lower-case letters, digits, '-' and '_', "
                "starting with a letter"
            )
        template = TEMPLATES.get(self.template)
        if template is None:
            raise ValueError(f"no template {self.template!r}: use one of {', '.join(TEMPLATES)}")
        if template.subscribes:
            _pattern(self.subscribe, f"{self.id}: the pattern it handles")
        if template.emits:
            if not self.emit:
                raise ValueError(f"{self.id}: a {template.title} agent emits on a topic: give one")
            try:
                validate_topic(self.emit)
            except TopicError as exc:
                raise ValueError(f"{self.id}: emitted topic {self.emit!r}: {exc}") from None
        if "llm" in template.needs and not self.llm:
            raise ValueError(f"{self.id}: name the LLM ([llm.<name>] in loom.toml)")
        if "tool" in template.needs and not self.tool:
            raise ValueError(f"{self.id}: name the tool it calls")
        for pattern in self.gather:
            _pattern(pattern, f"{self.id}: a pattern it gathers")


def _pattern(pattern: str | None, what: str) -> None:
    if not pattern:
        raise ValueError(f"{what} is missing")
    try:
        compile_pattern(pattern)
    except TopicError as exc:
        raise ValueError(f"{what}, {pattern!r}: {exc}") from None


def class_name(agent_id: str) -> str:
    """``price-feed`` -> ``PriceFeed``."""
    return "".join(part.capitalize() for part in re.split(r"[-_]", agent_id) if part)


def module_name(agent_id: str) -> str:
    """``price-feed`` -> ``price_feed`` (the file ``agents/price_feed.py``)."""
    return agent_id.replace("-", "_")


_HEAD = '''"""{id}: {summary}"""

from __future__ import annotations
{imports}
from loom_kernel import {names}


class {cls}(Agent):
    """{summary}"""

    id = "{id}"
'''

_BODIES = {
    "producer": """    interval = {interval!r}  # seconds between two events

    async def run(self, ctx: Context) -> None:
        n = 0
        while True:
            n += 1
            await ctx.emit("{emit}", {{"n": n}})
            await asyncio.sleep(self.interval)
""",
    "transform": """
    @on_event("{subscribe}"{qos})
    async def handle(self, event: Envelope, ctx: Context) -> None:
        await ctx.emit("{emit}", event.data)
""",
    "llm": """
    @on_event("{subscribe}"{qos})
    async def handle(self, event: Envelope, ctx: Context) -> None:
        answer = await ctx.llm("{llm}").complete(str(event.data))
        await ctx.emit("{emit}", {{"answer": answer.text}})
""",
    "tool": """
    @on_event("{subscribe}"{qos})
    async def handle(self, event: Envelope, ctx: Context) -> None:
        args = event.data if isinstance(event.data, dict) else {{}}
        result = await ctx.tool("{tool}", args)
        await ctx.emit("{emit}", result)
""",
    "sink": """
    @on_event("{subscribe}"{qos})
    async def handle(self, event: Envelope, ctx: Context) -> None:
        ctx.log.info("%s: %s", event.topic, event.data)
""",
    "responder": """
    @on_event("{subscribe}"{qos})
    async def answer(self, event: Envelope, ctx: Context) -> None:
        await ctx.reply(event, {{"echo": event.data}})
""",
    "fan_in": """
    @on_event("{subscribe}"{qos})
    async def gather(self, event: Envelope, ctx: Context) -> None:
        result = await ctx.fan_in([{gather}], timeout=2.0)
        await ctx.emit("{emit}", [got.data for got in result.events])
""",
    "bidder": """
    @on_event("{subscribe}"{qos})
    async def on_call(self, event: Envelope, ctx: Context) -> None:
        if event.type != "cfp":
            return
        award = await ctx.bid(event, score=1.0)
        if award is not None:
            await ctx.reply(award, {{"done": event.data}})
""",
}

_SUMMARIES = {
    "producer": "emits ``{emit}`` every {interval!r} s.",
    "transform": "handles ``{subscribe}`` and emits ``{emit}``.",
    "llm": "asks the LLM ``{llm}`` about ``{subscribe}`` and emits ``{emit}``.",
    "tool": "calls the tool ``{tool}`` for ``{subscribe}`` and emits ``{emit}``.",
    "sink": "logs every ``{subscribe}`` event.",
    "responder": "answers requests on ``{subscribe}``.",
    "fan_in": "on ``{subscribe}``, gathers {gathered} and emits ``{emit}``.",
    "bidder": "bids on calls for proposals on ``{subscribe}``.",
}


def render(spec: AgentSpec) -> str:
    """The module of a new agent (checked first: ValueError says what to fix)."""
    spec.check()
    values = {
        "id": spec.id, "cls": class_name(spec.id), "subscribe": spec.subscribe or "",
        "emit": spec.emit or "", "llm": spec.llm or "", "tool": spec.tool or "",
        "interval": float(spec.interval),
        "qos": "" if spec.qos == "reliable" else f', qos="{spec.qos}"',
        "gather": ", ".join(f'"{p}"' for p in spec.gather),
        "gathered": ", ".join(f"``{p}``" for p in spec.gather) or "nothing",
    }  # fmt: skip
    producer = spec.template == "producer"
    summary = _SUMMARIES[spec.template].format(**values)
    values["summary"] = summary[0].upper() + summary[1:]
    values["imports"] = "\nimport asyncio\n" if producer else ""
    values["names"] = "Agent, Context" if producer else "Agent, Context, Envelope, on_event"
    return _HEAD.format(**values) + _BODIES[spec.template].format(**values)
