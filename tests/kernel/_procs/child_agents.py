"""A second process for ``test_multiprocess.py``: runs the named agents on the project's bus.

    python child_agents.py NAME [NAME ...]

Run it with the project folder as working directory: ``loom_kernel.run`` finds its
``loom.toml`` there and joins the running bus through ``.loom/bus.json``. It runs until
SIGTERM or SIGINT, then stops its agents (each announces it on ``child.stopped``).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable

from loom_kernel import Agent, on_event, run, tool


class ChildAgent(Agent):
    async def on_stop(self, ctx):
        await ctx.emit("child.stopped", {"agent": self.id, "pid": os.getpid()})


class Echo(ChildAgent):
    @on_event("child.echo")
    async def echo(self, event, ctx):
        await ctx.reply(event, {"echo": event.data, "pid": os.getpid()})


class Relay(ChildAgent):
    """Answers by asking the parent process: requests go both ways."""

    @on_event("child.relay")
    async def relay(self, event, ctx):
        answer = await ctx.request("parent.double", event.data, timeout=5.0)
        await ctx.reply(event, {"doubled": answer.data, "pid": os.getpid()})


class Watcher(ChildAgent):
    @on_event("market.price.*")
    async def price(self, event, ctx):
        await ctx.emit(f"child.seen.{event.topic}", event.data)


class Quoter(ChildAgent):
    @on_event("quote.ask")
    async def quote(self, event, ctx):
        await ctx.reply(event, {"by": self.id, "pid": os.getpid()})


class Upper(ChildAgent):
    @on_event("pipe.raw")
    async def upper(self, event, ctx):
        await ctx.emit("pipe.upper", event.data.upper())


class Exclaim(ChildAgent):
    @on_event("pipe.upper")
    async def exclaim(self, event, ctx):
        await ctx.emit("pipe.exclaimed", event.data + "!")


class Calculator(ChildAgent):
    @tool()
    async def add(self, a: int, b: int = 0) -> int:
        """Add two integers in another process."""
        return a + b


class Ticker(ChildAgent):
    """Emits ``tick.n`` with n = 1, 2, 3... every 2 ms, whatever happens to the bus."""

    async def run(self, ctx):
        n = 0
        while True:
            n += 1
            await ctx.emit("tick.n", n)
            await asyncio.sleep(0.002)


AGENTS: dict[str, Callable[[], Agent]] = {
    "echo": lambda: Echo("child-echo"),
    "relay": lambda: Relay("child-relay"),
    "watcher": lambda: Watcher("child-watcher"),
    "quoter-a": lambda: Quoter("child-quoter-a"),
    "quoter-b": lambda: Quoter("child-quoter-b"),
    "upper": lambda: Upper("child-upper"),
    "exclaim": lambda: Exclaim("child-exclaim"),
    "calculator": lambda: Calculator("child-calculator"),
    "ticker": lambda: Ticker("child-ticker"),
}


if __name__ == "__main__":
    run(*(AGENTS[name]() for name in sys.argv[1:]))
