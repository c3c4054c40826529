"""A publisher for ``tests/kernel/durability``: COUNT events at RATE per second.

    python load_publisher.py TOPIC COUNT RATE

Joins the project's bus (found from the working directory) and publishes ``{"n": i}``
on TOPIC, paced to RATE events per second (0: as fast as it can), as the agent-less
source ``publisher``; then waits until the event log acknowledged what it must (reliable
topics) and prints ``sent <count> in <seconds> resent <events sent again to the log>``.
Past ``[eventlog] max_in_flight`` it waits for the log's acknowledgements before going on.
"""

from __future__ import annotations

import asyncio
import sys

from loom_kernel import BusError, Envelope, open_runtime

TOPIC, COUNT, RATE = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])


async def main() -> None:
    async with open_runtime() as rt:
        send = rt.context.endpoint.send
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent = 0
        while sent < COUNT:
            due = COUNT if RATE <= 0 else min(COUNT, int((loop.time() - started) * RATE) + 1)
            while sent < due:
                try:
                    send(Envelope(topic=TOPIC, data={"n": sent}))
                except BusError:  # [eventlog] max_in_flight: wait for the log's acks
                    await rt.wait_acknowledged(30)
                    continue
                sent += 1
                if sent % 1000 == 0:
                    break
            await asyncio.sleep(0 if RATE <= 0 else 0.001)
        seconds = loop.time() - started
        await rt.wait_acknowledged(30)
        resent = (rt.transport.statistics().durability or {}).get("resent", 0)
        print(f"sent {sent} in {seconds:.3f} resent {resent}", flush=True)
        await asyncio.sleep(0.2)  # let the PUB socket flush before the runtime closes


if __name__ == "__main__":
    asyncio.run(main())
