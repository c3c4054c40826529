"""A durable subscriber for ``tests/kernel/durability``: records what it handles.

    python durable_sink.py OUTPUT [PATTERN]

Runs the agent ``sink`` on the project's bus (found from the working directory); its
reliable handler of PATTERN (default ``load.*``) appends ``<source> <seq> <id>`` to
OUTPUT for every event, one unbuffered write each, so what it handled survives a
``kill -9``. It prints ``ready`` once its subscription is live.
"""

from __future__ import annotations

import os
import sys

from loom_kernel import Agent, on_event, run

OUTPUT = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
PATTERN = sys.argv[2] if len(sys.argv) > 2 else "load.*"


class Sink(Agent):
    @on_event(PATTERN)
    async def take(self, event, ctx):
        os.write(OUTPUT, f"{event.source} {event.seq} {event.id}\n".encode())

    async def on_start(self, ctx):
        print("ready", flush=True)


if __name__ == "__main__":
    run(Sink("sink"))
