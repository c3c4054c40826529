"""The kernel's current request while a comm message is handled beside a running cell, in a
real ipykernel (loom_studio/kernel_parent.py).

The race, made deterministic: cell A runs; a comm message arrives and is handled beside it,
held (a test hook) until cell B has started; then ipykernel puts A back as the current
request. Without the guard, B's output and its closing idle status name A: JupyterLab shows
B running for ever. With it, both name B.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from jupyter_client.manager import AsyncKernelManager

from tests.conftest import python_env

pytestmark = pytest.mark.timeout(90)
WAIT = 20.0  # seconds: the kernel starts, imports the studio, runs two short cells

SETUP = """
import asyncio
kernel = get_ipython().kernel
gate = asyncio.Event()

async def held_comm(stream, msg, idents):  # a comm message that takes a while to handle
    if msg["header"]["msg_type"] == "comm_msg":
        await gate.wait()
    return True

kernel.should_handle = held_comm
"""
GUARD = "from loom_studio.kernel_parent import guard_shell_parent\nguard_shell_parent(kernel)"


@pytest.fixture
async def kernel() -> AsyncIterator[Any]:
    manager = AsyncKernelManager(kernel_name="python3")
    await manager.start_kernel(env=python_env())
    client = manager.client()
    client.start_channels()
    try:
        await client.wait_for_ready(timeout=WAIT)
        yield client
    finally:
        client.stop_channels()
        await manager.shutdown_kernel(now=True)


async def _run(client: Any, code: str) -> None:
    reply = await client.execute(code, reply=True, timeout=WAIT)
    assert reply["content"]["status"] == "ok", reply["content"]


async def _race(client: Any) -> dict[str, Any]:
    """Cell A, a held comm message, cell B; what iopub said about B."""
    a = client.execute("await asyncio.sleep(0.5)")
    await asyncio.sleep(0.2)
    comm = client.session.msg("comm_msg", {"comm_id": "no-such-comm", "data": {}})
    client.shell_channel.send(comm)
    b = client.execute("gate.set()\nawait asyncio.sleep(0.3)\nprint('B done')")
    seen: dict[str, Any] = {"b_idle": False, "b_printed_under": None, "a_idles": 0}
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and not seen["b_idle"]:
        try:
            msg = await client.get_iopub_msg(timeout=0.2)
        except Exception:  # queue.Empty: nothing yet
            continue
        parent = msg["parent_header"].get("msg_id")
        if msg["msg_type"] == "stream" and "B done" in msg["content"]["text"]:
            seen["b_printed_under"] = "B" if parent == b else "A" if parent == a else parent
        if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            seen["b_idle"] |= parent == b
            seen["a_idles"] += parent == a
    return seen


async def test_with_the_guard_the_next_cell_keeps_its_output_and_its_idle(kernel: Any) -> None:
    await _run(kernel, SETUP)
    await _run(kernel, GUARD)
    seen = await _race(kernel)
    assert seen == {"b_idle": True, "b_printed_under": "B", "a_idles": 1}


async def test_without_it_ipykernel_gives_them_to_the_ended_cell(kernel: Any) -> None:
    """What the guard is for: if this ipykernel gets it right, the guard has no work."""
    await _run(kernel, SETUP)
    seen = await _race(kernel)
    if seen["b_idle"] and seen["b_printed_under"] == "B":
        pytest.skip("this ipykernel keeps the current request right: the guard is idle")
    assert seen["b_idle"] is False
    assert seen["a_idles"] == 2  # B's idle went out under A
