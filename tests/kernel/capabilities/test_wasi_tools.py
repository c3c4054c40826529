"""Sandboxed tools: a WebAssembly module under wasmtime, its limits and grants, called
through ``ctx.tool`` like any other tool (docs/security.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from loom_kernel import open_runtime
from loom_kernel.capabilities.wasi_tools import WasiTool
from loom_kernel.config import SandboxedToolConfig
from loom_kernel.errors import ConfigError, ToolError, ToolTimeout

REPO = Path(__file__).resolve().parents[3]
WORD_COUNT = REPO / "examples" / "wasm_tool" / "word_count.wasm"
MISBEHAVE = Path(__file__).parent / "wasm" / "misbehave.wasm"
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A project folder with the misbehaving tool, a folder it may read and one it may
    write, and a secret beside them it must not reach."""
    shutil.copy(MISBEHAVE, tmp_path / "misbehave.wasm")
    for folder in ("data", "out"):
        (tmp_path / folder).mkdir()
    (tmp_path / "data" / "notes.txt").write_text("readable line\n")
    (tmp_path / "secret.txt").write_text("password\n")
    return tmp_path


def misbehave(project: Path, **settings: object) -> WasiTool:
    defaults: dict[str, object] = {"sandbox": "wasi", "module": "misbehave.wasm"}
    return WasiTool("misbehave", SandboxedToolConfig(**{**defaults, **settings}), project)


async def test_the_example_tool_counts_words() -> None:
    settings = SandboxedToolConfig(sandbox="wasi", module=str(WORD_COUNT))
    tool = WasiTool("word_count", settings, REPO)
    assert await tool.call({"text": "one two\nthree ünï \"q\"\n"}) == {
        "words": 5, "lines": 2, "chars": 22,
    }  # fmt: skip
    assert await tool.call({"text": ""}) == {"words": 0, "lines": 0, "chars": 0}


async def test_a_runaway_loop_runs_out_of_fuel(sandbox: Path) -> None:
    with pytest.raises(ToolError, match=r"ran out of fuel \(50,000,000 units\).*fuel"):
        await misbehave(sandbox, fuel=50_000_000).call({"do": "loop"})


async def test_a_runaway_loop_is_stopped_by_the_wall_clock(sandbox: Path) -> None:
    tool = misbehave(sandbox, fuel=10**18, timeout_sec=0.3)
    with pytest.raises(ToolTimeout, match=r"longer than 0.3 s"):
        await tool.call({"do": "loop"})
    with pytest.raises(ToolTimeout, match=r"longer than 0.1 s"):  # the caller's, shorter
        await tool.call({"do": "loop"}, timeout=0.1)


async def test_a_tool_cannot_sleep(sandbox: Path) -> None:
    """A wait in the host could not be interrupted: it is refused, the tool goes on."""
    assert await misbehave(sandbox).call({"do": "sleep"}) == {"slept": False}


async def test_memory_cannot_grow_past_the_limit(sandbox: Path) -> None:
    small = await misbehave(sandbox, memory_mb=8).call({"do": "alloc"})
    large = await misbehave(sandbox, memory_mb=32).call({"do": "alloc"})
    assert 0 < small["mib"] < 8 <= 24 < large["mib"] < 32


async def test_files_are_out_of_reach_unless_granted(sandbox: Path) -> None:
    closed = misbehave(sandbox)
    assert await closed.call({"do": "read", "path": "data/notes.txt"}) == {
        "error": "Capabilities insufficient"
    }
    granted = misbehave(sandbox, read_dirs=["data"], write_dirs=["out"])
    assert await granted.call({"do": "read", "path": "data/notes.txt"}) == {"line": "readable line"}
    for outside in ("secret.txt", "data/../secret.txt", str(sandbox / "secret.txt"), "/etc/passwd"):
        answer = await granted.call({"do": "read", "path": outside})
        assert "error" in answer, (outside, answer)
    assert "error" in await granted.call({"do": "write", "path": "data/new.txt"})  # read only
    assert await granted.call({"do": "write", "path": "out/new.txt"}) == {"written": True}
    assert (sandbox / "out" / "new.txt").read_text() == "written from the sandbox\n"


async def test_the_environment_is_empty_unless_granted(
    sandbox: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET", "from the host")
    assert await misbehave(sandbox).call({"do": "env"}) == {"secret": None}
    assert await misbehave(sandbox, env={"SECRET": "given"}).call({"do": "env"}) == {
        "secret": "given"
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"do": "exit"}, r"exited with code 3; its stderr ends: something went wrong"),
        ({"do": "garbage"}, r"printed something that is not JSON: 'this is not JSON'"),
        ({"do": "flood"}, r"printed 2,097,15\d bytes, more than its 1024 KiB"),
        ({"do": "trap"}, r"crashed: unreachable"),
    ],
)
async def test_a_failing_tool_is_a_tool_error_saying_what_failed(
    sandbox: Path, args: dict[str, str], message: str
) -> None:
    with pytest.raises(ToolError, match=message):
        await misbehave(sandbox).call(args)


async def test_arguments_are_checked_against_the_schema(sandbox: Path) -> None:
    schema = {"type": "object", "properties": {"do": {"enum": ["env"]}}, "required": ["do"]}
    tool = misbehave(sandbox, input_schema=schema)
    with pytest.raises(ToolError, match=r"tool misbehave: argument 'do': 'loop' is not one of"):
        await tool.call({"do": "loop"})
    with pytest.raises(ToolError, match=r"argument 'do' is missing \(it takes: do\)"):
        await tool.call({})
    broken = misbehave(sandbox, input_schema={"type": "no such type"})
    with pytest.raises(ToolError, match=r"\[tools.misbehave\] input_schema is not a JSON schema"):
        await broken.call({})


async def test_a_bad_module_says_so(sandbox: Path) -> None:
    (sandbox / "broken.wasm").write_bytes(b"not wasm at all")
    with pytest.raises(ToolError, match=r"no WebAssembly module at .*missing.wasm"):
        await misbehave(sandbox, module="missing.wasm").call({})
    with pytest.raises(ToolError, match=r"is not a WebAssembly module wasmtime can load"):
        await misbehave(sandbox, module="broken.wasm").call({})


def test_a_bad_declaration_is_a_config_error(tmp_path: Path) -> None:
    from loom_kernel.config import parse_config

    with pytest.raises(ConfigError, match="sandbox"):
        parse_config({"tools": {"t": {"module": "t.wasm"}}})
    with pytest.raises(ConfigError, match="fuel"):
        parse_config({"tools": {"t": {"sandbox": "wasi", "module": "t.wasm", "fuel": 0}}})


async def test_agents_call_it_with_ctx_tool_and_it_is_listed(project: Path) -> None:
    shutil.copy(WORD_COUNT, project / "word_count.wasm")
    (project / "loom.toml").write_text(
        """\
[tools.word_count]
sandbox = "wasi"
module = "word_count.wasm"
description = "Counts the words, lines and characters of a text."
input_schema = { type = "object", properties = { text = { type = "string" } }, required = ["text"] }
"""
    )
    async with open_runtime(project / "loom.toml") as rt:
        assert await rt.tool("word_count", {"text": "a b c"}) == {
            "words": 3, "lines": 1, "chars": 5,
        }  # fmt: skip
        [info] = [info for info in await rt.tools(mcp=False) if info.name == "word_count"]
        assert (info.kind, info.provider) == ("wasi", "wasi:word_count.wasm")
        assert info.description.startswith("Counts the words")
        with pytest.raises(ToolError, match="text"):
            await rt.tool("word_count", {"txt": "typo"})
        [stats] = [s for s in rt.actions.statistics() if s.name == "word_count"]
        assert (stats.calls, stats.errors) == (2, 1)
