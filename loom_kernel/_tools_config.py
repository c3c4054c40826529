"""``[tools.<name>]`` of ``loom.toml``: tools that run sandboxed (``docs/security.md``),
kept beside ``config.py``, which re-exports it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from ._config_section import Section

__all__ = ["SandboxedToolConfig"]


class SandboxedToolConfig(Section):
    """``[tools.<name>]``: a WebAssembly (WASI) module called as the tool ``<name>``: its
    arguments as JSON on stdin, its result as JSON on stdout."""

    sandbox: Literal["wasi"] = Field(
        description='How the tool runs: "wasi", a WebAssembly module under wasmtime, with '
        "no file system, network or environment unless granted here."
    )
    module: str = Field(description="The .wasm file (relative: to the project's folder).")
    description: str = Field(default="", description="What the tool does, for LLMs and lists.")
    input_schema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"},
        description="JSON schema of the arguments object; calls are checked against it.",
    )
    fuel: int = Field(
        default=2_000_000_000, gt=0, description="Work allowed per call (about one unit per "
        "WebAssembly instruction): past it the call stops with a ToolError.",
    )  # fmt: skip
    memory_mb: int = Field(
        default=64, gt=0, description="Linear memory a call may grow to (MiB); past it "
        "allocations fail inside the tool.",
    )  # fmt: skip
    timeout_sec: float = Field(
        default=5.0, gt=0, description="Wall-clock seconds per call: past them it is stopped."
    )
    max_output_kb: int = Field(
        default=1024, gt=0, description="Largest result (KiB) a call may print."
    )
    read_dirs: list[str] = Field(
        default_factory=list, description="Folders the tool may read (relative: to the "
        "project), seen inside it under the same relative path. Nothing else is visible.",
    )  # fmt: skip
    write_dirs: list[str] = Field(
        default_factory=list, description="Folders the tool may read and write."
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment variables the tool sees (none else)."
    )
    enabled: bool = Field(default=True, description="false: declared but not callable.")
