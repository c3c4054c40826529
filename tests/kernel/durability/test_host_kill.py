"""No loss on a reliable topic when the process hosting the bus and the event log is
killed: a survivor takes both over, the publisher sends again what the log did not
acknowledge, the subscriber fetches its gap from the log."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from pathlib import Path

import pytest

from tests.kernel.durability.test_reliable_delivery import (
    COUNT,
    RATE,
    STARTUP,
    configure,
    handled,
    line_from,
    spawn,
    wait_for,
)

pytestmark = [pytest.mark.multiprocess, pytest.mark.timeout(180)]


def host_pid(project: Path) -> int | None:
    try:
        return json.loads((project / ".loom" / "bus.json").read_text())["pid"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


async def test_a_killed_bus_host_loses_nothing_on_a_reliable_topic(project: Path) -> None:
    configure(project)
    output = project / "handled.txt"
    host = await spawn(project, "child_agents", "echo")  # the first: it hosts bus and log
    procs = [host]
    try:
        await wait_for(lambda: host_pid(project) == host.pid, STARTUP, "the first host")
        sink = await spawn(project, "durable_sink", str(output))
        procs.append(sink)
        assert await line_from(sink) == "ready"
        publisher = await spawn(project, "load_publisher", "load.x", str(COUNT), str(RATE))
        procs.append(publisher)
        await wait_for(lambda: len(handled(output)) >= COUNT // 4, 60.0, "a quarter handled")
        os.kill(host.pid, signal.SIGKILL)
        await host.wait()
        killed_at = len(handled(output))
        await wait_for(
            lambda: host_pid(project) in (sink.pid, publisher.pid), 30.0, "a survivor hosting"
        )
        assert (await line_from(publisher, 120.0)).startswith(f"sent {COUNT}")
        everything = lambda: len(set(handled(output))) >= COUNT  # noqa: E731
        await wait_for(everything, 60.0, "every event handled")
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    events = handled(output)
    assert killed_at < COUNT, "the host was killed after the subscriber had everything"
    assert sorted(seq for _, seq in set(events)) == list(range(1, COUNT + 1)), "events lost"
    twice = [key for key, n in Counter(events).items() if n > 1]
    assert twice == [], f"handled twice: {twice[:10]}"
    print(f"kill -9 of the bus host after {killed_at} of {COUNT}: 0 lost, 0 handled twice")
