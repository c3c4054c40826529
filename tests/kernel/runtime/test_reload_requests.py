"""Reloads asked on the bus (``loom.code.reload``): the runtime running the module's agents
reloads them and replies; the asker's own runtime and runtimes without them stay silent."""

from __future__ import annotations

import importlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from loom_kernel import Runtime, open_runtime
from loom_kernel.messaging import fan_out
from loom_kernel.protocol import reserved
from tests.kernel.runtime.test_reload import V1, V2, write

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def module(project: Path) -> Iterator[tuple[str, Path]]:
    name = f"asked_agents_{project.name.replace('-', '_')}"
    path = project / f"{name}.py"
    path.write_text(V1)
    sys.path.insert(0, str(project))
    try:
        yield name, path
    finally:
        sys.path.remove(str(project))
        sys.modules.pop(name, None)


@pytest.fixture
async def asker(rt: Runtime, tmp_path: Path) -> AsyncIterator[Runtime]:
    """A second runtime on the same bus, with no agents: the studio's, say."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "loom.toml").write_text('[bus]\nmode = "embedded"\n')
    async with open_runtime(elsewhere / "loom.toml", bus=rt.address.publish) as joined:
        yield joined


async def ask(asker: Runtime, module: str, timeout: float = 5.0) -> list[dict]:
    gathered = await fan_out(
        asker.context.endpoint, reserved.CODE_RELOAD, {"module": module}, first=1, timeout=timeout
    )
    return [event.data for event in gathered.events]


async def test_the_runtime_running_the_module_reloads_it_and_replies(
    rt: Runtime, asker: Runtime, module: tuple[str, Path]
) -> None:
    name, path = module
    await rt.start(importlib.import_module(name).Counter("counter"))
    counted = await rt.subscribe("counted")
    write(path, V2)
    [reply] = await ask(asker, name)
    assert reply["ok"] is True and reply["process"] == rt.client.client_id
    [result] = reply["results"]
    assert (result["agent"], result["version"], result["added"]) == ("counter", 2, ["extra"])
    await asker.emit("count.a")
    assert (await counted.get(5)).data["version"] == 2


async def test_a_broken_module_is_reported_with_its_line_and_the_old_code_goes_on(
    rt: Runtime, asker: Runtime, module: tuple[str, Path]
) -> None:
    name, path = module
    await rt.start(importlib.import_module(name).Counter("counter"))
    write(path, V1.replace('self.state["n"] =', 'self.state["n"] = = '))
    [reply] = await ask(asker, name)
    assert reply["ok"] is False and reply["agents"] == ["counter"]
    assert (reply["file"], reply["line"]) == (str(path), 7)
    assert "syntax error" in reply["error"]
    assert rt.agents["counter"].version == 1


async def test_no_reply_from_a_runtime_without_agents_of_the_module(
    rt: Runtime, asker: Runtime, module: tuple[str, Path]
) -> None:
    name, _ = module
    await rt.start(importlib.import_module(name).Counter("counter"))
    assert await ask(asker, "no_such_module", timeout=0.5) == []
    # and the asker's own runtime does not answer itself (it reloads its agents directly)
    assert await ask(rt, name, timeout=0.5) == []
    assert rt.agents["counter"].version == 1
