"""Sandboxed tools: a WebAssembly (WASI) module called as a tool (``[tools.<name>]``).

A call runs the module as a WASI command under wasmtime: the arguments object as JSON on
stdin, the result read as JSON from stdout. The module sees nothing of the host (no file
system, no network, no environment) beyond what ``loom.toml`` grants: folders to read
(``read_dirs``) or write (``write_dirs``) and environment variables (``env``). Each call
gets a fresh store with its own limits:

- ``fuel``: wasmtime counts the work done; past the budget the call traps;
- ``memory_mb``: linear memory cannot grow past it (allocations fail inside the tool);
- ``timeout_sec``: wall clock, through wasmtime's epoch interruption (a ticker thread
  advances the epoch every 10 ms); a tool cannot sleep or wait (``poll_oneoff`` answers
  "not supported"), since a call blocked in the host could not be interrupted;
- ``max_output_kb``: a bigger result is refused.

Every failure is a :class:`~loom_kernel.errors.ToolError` saying which limit or what exit
code, with the end of the tool's stderr. A call runs on a worker thread (wasmtime releases
the GIL), so the event loop keeps serving other agents meanwhile.

The module is compiled once per process (200-500 ms) and instantiated per call (well under a
millisecond). Compile a C tool with ``clang --target=wasm32-wasi -O2 tool.c -o tool.wasm``
(Debian: ``apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32``).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import SandboxedToolConfig
from ..errors import ToolError, ToolTimeout
from .tools import ToolInfo, check_arguments, load_validator

if TYPE_CHECKING:  # imported when a tool is first called: `import loom_kernel` stays light
    import wasmtime

__all__ = ["WasiTool"]

TICK_SEC = 0.01  # how often the epoch advances: the resolution of timeout_sec
_WASI_ENOTSUP = 58  # WASI's errno "not supported"
_SCRATCH = Path("/dev/shm") if Path("/dev/shm").is_dir() else None  # stdin/stdout files


class _Ticker:
    """One engine for every sandboxed tool of the process, and the thread that advances its
    epoch (a store's deadline is counted in ticks)."""

    _engine: wasmtime.Engine | None = None
    _lock = threading.Lock()

    @classmethod
    def engine(cls) -> wasmtime.Engine:
        import wasmtime

        with cls._lock:
            if cls._engine is None:
                config = wasmtime.Config()
                config.consume_fuel = True
                config.epoch_interruption = True
                cls._engine = wasmtime.Engine(config)
                threading.Thread(
                    target=cls._tick, args=(cls._engine,), name="loom-wasi-epoch", daemon=True
                ).start()
            return cls._engine

    @staticmethod
    def _tick(engine: wasmtime.Engine) -> None:
        while True:
            time.sleep(TICK_SEC)
            engine.increment_epoch()


class WasiTool:
    """One ``[tools.<name>]`` entry, ready to call."""

    def __init__(self, name: str, settings: SandboxedToolConfig, project_dir: Path):
        self.name = name
        self.settings = settings
        self.path = _project_path(settings.module, project_dir)
        self.grants = [
            (_project_path(folder, project_dir), folder, writable)
            for folders, writable in ((settings.read_dirs, False), (settings.write_dirs, True))
            for folder in folders
        ]
        self._pre: wasmtime.InstancePre | None = None
        self._compile_lock = threading.Lock()
        self._schema_checked = False

    @property
    def info(self) -> ToolInfo:
        return ToolInfo(
            name=self.name,
            description=self.settings.description,
            input_schema=self.settings.input_schema,
            provider=f"wasi:{self.settings.module}",
            kind="wasi",
        )

    async def call(self, args: dict[str, Any], *, timeout: float | None = None) -> Any:
        """Run the tool once with ``args``; its JSON result.

        Raises:
            ToolError: bad arguments, a limit reached, a non-zero exit, or output that is
                not JSON.
            ToolTimeout: the call ran past its wall-clock limit.
        """
        await load_validator()
        self._check_schema()
        check_arguments(self.info, args)
        limit = min(timeout, self.settings.timeout_sec) if timeout else self.settings.timeout_sec
        stdin = json.dumps(args).encode()
        return await asyncio.to_thread(self._run, stdin, limit)

    def _check_schema(self) -> None:
        """A broken ``input_schema`` in loom.toml is the project's mistake: say so."""
        if self._schema_checked:
            return
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(self.settings.input_schema)
        except SchemaError as exc:
            raise ToolError(
                f"[tools.{self.name}] input_schema is not a JSON schema: {exc.message}"
            ) from None
        self._schema_checked = True

    # -- on a worker thread ----------------------------------------------------------

    def _instance_pre(self) -> wasmtime.InstancePre:
        import wasmtime

        with self._compile_lock:
            if self._pre is None:
                if not self.path.is_file():
                    raise ToolError(
                        f"tool {self.name!r}: no WebAssembly module at {self.path} "
                        f"([tools.{self.name}] module)"
                    )
                engine = _Ticker.engine()
                try:
                    module = wasmtime.Module.from_file(engine, str(self.path))
                except wasmtime.WasmtimeError as exc:
                    raise ToolError(
                        f"tool {self.name!r}: {self.path} is not a WebAssembly module "
                        f"wasmtime can load: {_first_line(exc)}"
                    ) from None
                linker = wasmtime.Linker(engine)
                linker.define_wasi()
                _no_waiting(linker)
                try:
                    self._pre = linker.instantiate_pre(module)
                except wasmtime.WasmtimeError as exc:
                    raise ToolError(
                        f"tool {self.name!r}: {self.path} imports what a WASI command may "
                        f"not: {_first_line(exc)}"
                    ) from None
            return self._pre

    def _run(self, stdin: bytes, timeout: float) -> Any:
        import wasmtime

        pre = self._instance_pre()
        settings = self.settings
        with tempfile.TemporaryDirectory(prefix="loom-wasi-", dir=_SCRATCH) as scratch:
            files = {name: Path(scratch) / name for name in ("stdin", "stdout", "stderr")}
            files["stdin"].write_bytes(stdin)
            wasi = wasmtime.WasiConfig()
            wasi.argv = [self.name]
            wasi.env = list(settings.env.items())
            wasi.stdin_file = str(files["stdin"])
            wasi.stdout_file = str(files["stdout"])
            wasi.stderr_file = str(files["stderr"])
            for host, guest, writable in self.grants:
                wasi.preopen_dir(str(host), guest, writable)
            store = wasmtime.Store(_Ticker.engine())
            store.set_limits(memory_size=settings.memory_mb * 1024 * 1024)
            store.set_fuel(settings.fuel)
            store.set_epoch_deadline(max(1, round(timeout / TICK_SEC)))
            store.set_wasi(wasi)
            try:
                instance = pre.instantiate(store)
                start = instance.exports(store)["_start"]
                start(store)  # type: ignore[operator]
            except wasmtime.ExitTrap as exit_:
                if exit_.code != 0:
                    raise ToolError(
                        f"tool {self.name!r} exited with code {exit_.code}"
                        + _stderr(files["stderr"])
                    ) from None
            except wasmtime.Trap as trap:
                raise self._trap_error(trap, timeout, files["stderr"]) from None
            except KeyError:
                raise ToolError(
                    f"tool {self.name!r}: {self.path} has no _start: build it as a WASI "
                    "command (a main function), not a library"
                ) from None
            except wasmtime.WasmtimeError as exc:
                raise ToolError(f"tool {self.name!r} failed: {_first_line(exc)}") from None
            return self._result(files["stdout"], files["stderr"])

    def _trap_error(self, trap: wasmtime.Trap, timeout: float, stderr: Path) -> ToolError:
        import wasmtime

        code = trap.trap_code
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return ToolError(
                f"tool {self.name!r} ran out of fuel ({self.settings.fuel:,} units): it was "
                f"stopped. Raise [tools.{self.name}] fuel if it needs more."
            )
        if code == wasmtime.TrapCode.INTERRUPT:
            return ToolTimeout(
                f"tool {self.name!r} ran longer than {timeout:g} s: it was stopped "
                f"([tools.{self.name}] timeout_sec)"
            )
        what = code.name.lower().replace("_", " ") if code is not None else _first_line(trap)
        return ToolError(f"tool {self.name!r} crashed: {what}" + _stderr(stderr))

    def _result(self, stdout: Path, stderr: Path) -> Any:
        size = stdout.stat().st_size
        if size > self.settings.max_output_kb * 1024:
            raise ToolError(
                f"tool {self.name!r} printed {size:,} bytes, more than its "
                f"{self.settings.max_output_kb} KiB ([tools.{self.name}] max_output_kb)"
            )
        text = stdout.read_text(errors="replace").strip()
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ToolError(
                f"tool {self.name!r} printed something that is not JSON: {text[:200]!r}"
                + _stderr(stderr)
            ) from None


def _no_waiting(linker: wasmtime.Linker) -> None:
    """Refuse WASI's ``poll_oneoff`` (sleep, wait on a clock or a file) with ``ENOTSUP``: a
    call blocked in the host cannot be interrupted by the epoch, so a sandboxed tool may
    compute or return, never wait."""
    import wasmtime

    i32 = wasmtime.ValType.i32()
    linker.allow_shadowing = True
    linker.define_func(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        wasmtime.FuncType([i32, i32, i32, i32], [i32]),
        lambda *_: _WASI_ENOTSUP,
    )
    linker.allow_shadowing = False


def _project_path(relative: str, project_dir: Path) -> Path:
    path = Path(relative).expanduser()
    return path if path.is_absolute() else project_dir / path


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _stderr(path: Path) -> str:
    text = path.read_text(errors="replace").strip() if path.exists() else ""
    return f"; its stderr ends: {text[-500:]}" if text else ""
