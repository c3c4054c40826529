"""The public surface: what users import from ``loom_kernel`` stays there."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

import loom_kernel
import loom_kernel.errors

#: ``loom_kernel.__all__`` of release 0.1: every name stays (the public API does not change).
PUBLIC_0_1 = {
    "Agent", "BarrierTimeout", "BusAddress", "BusError", "ConfigError", "Context",
    "ContractResult", "Envelope", "FanInResult", "LLMError", "LLMProvider", "LLMResponse",
    "LLMTimeout", "LoomConfig", "LoomError", "LoomTimeoutError", "Memory", "MemoryItem",
    "MemoryQueryError", "RemoteError", "RequestTimeout", "Runtime", "SpanStore",
    "Subscription", "ToolCall", "ToolError", "ToolInfo", "ToolTimeout", "TopicError", "Usage",
    "__version__", "capability", "load_config", "on_event", "open_runtime", "run", "tool",
    "topic_matches",
}  # fmt: skip

KERNEL_MODULES = [
    "loom_kernel.bus.zeromq",
    "loom_kernel.bus.zeromq.client",
    "loom_kernel.config",
    "loom_kernel.protocol.envelope",
    "loom_kernel.errors",
    "loom_kernel.capabilities.llm",
    "loom_kernel.capabilities.memory",
    "loom_kernel.bus.qos",
    "loom_kernel.stats",
    "loom_kernel.capabilities.tools",
    "loom_kernel.protocol.topics",
]


def test_what_users_write_imports() -> None:
    from loom_kernel import (
        Agent,
        Context,
        Envelope,
        on_event,
        open_runtime,
        tool,
        topic_matches,
    )

    for name in (Agent, Context, Envelope, on_event, open_runtime, tool, topic_matches):
        assert callable(name)


@pytest.mark.parametrize("name", loom_kernel.__all__)
def test_every_public_name_exists(name: str) -> None:
    assert getattr(loom_kernel, name) is not None


def test_public_names_are_unique_and_sorted() -> None:
    assert len(set(loom_kernel.__all__)) == len(loom_kernel.__all__)
    assert loom_kernel.__all__ == sorted(loom_kernel.__all__)


def test_every_name_of_release_0_1_is_still_exported() -> None:
    assert set(loom_kernel.__all__) >= PUBLIC_0_1


@pytest.mark.parametrize(
    ("old", "name"),
    [
        ("loom_kernel.envelope", "Envelope"),
        ("loom_kernel.client", "BusClient"),
        ("loom_kernel.bus", "BusAddress"),
        ("loom_kernel.span_store", "SpanStore"),
        ("loom_kernel.llm", "LLMProvider"),
        ("loom_kernel.context", "Context"),
        ("loom_kernel.runtime", "open_runtime"),
        ("loom_kernel.supervisor", "Supervisor"),
    ],
)
def test_old_module_paths_still_import_for_one_release(old: str, name: str) -> None:
    import subprocess
    import sys

    # a fresh interpreter: here the modules are already imported under their new names
    code = (
        "import warnings; warnings.simplefilter('always');"
        f"import {old} as m; print(m.{name}.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    moved = old not in ("loom_kernel.bus", "loom_kernel.runtime")  # now packages
    assert ("DeprecationWarning" in done.stderr) is moved
    if moved:
        assert "moved to loom_kernel." in done.stderr


def test_capability_is_the_tool_alias() -> None:
    assert loom_kernel.capability is loom_kernel.tool


def test_version_is_a_string() -> None:
    assert isinstance(loom_kernel.__version__, str)


@pytest.mark.parametrize("name", loom_kernel.errors.__all__)
def test_errors_are_loom_errors(name: str) -> None:
    error = getattr(loom_kernel.errors, name)
    assert issubclass(error, loom_kernel.errors.LoomError)


def test_error_module_names() -> None:
    from loom_kernel.errors import (
        BusError,
        ConfigError,
        LLMError,
        LoomError,
        LoomTimeoutError,
        ProtocolError,
        RemoteError,
        RequestTimeout,
        ToolError,
        TopicError,
    )

    for error in (BusError, ConfigError, LLMError, ProtocolError, RemoteError, ToolError):
        assert issubclass(error, LoomError)
    assert issubclass(TopicError, ValueError)
    assert issubclass(ProtocolError, ValueError)
    assert issubclass(LoomTimeoutError, TimeoutError)
    assert issubclass(RequestTimeout, LoomTimeoutError)


def test_top_level_errors_are_the_errors_module_classes() -> None:
    for name in loom_kernel.errors.__all__:
        if name in loom_kernel.__all__:
            assert getattr(loom_kernel, name) is getattr(loom_kernel.errors, name)


@pytest.mark.parametrize("module_name", KERNEL_MODULES)
def test_module_all_names_exist(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        assert hasattr(module, name), f"{module_name}.__all__ lists missing {name!r}"


def _undocumented(package: Any) -> list[str]:
    """Public names of ``package``, and the public methods and properties of its classes,
    that have no docstring of their own."""
    missing = []
    for name in package.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(package, name)
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        if not inspect.isclass(obj):
            continue
        for attribute, value in vars(obj).items():
            member = (
                value.fget if isinstance(value, property) else getattr(value, "__func__", value)
            )
            if attribute.startswith("_") or not (callable(member) or isinstance(value, property)):
                continue
            if not (getattr(member, "__doc__", None) or "").strip():
                missing.append(f"{name}.{attribute}")
    return missing


@pytest.mark.parametrize("package", ["loom_kernel", "loom_studio"])
def test_every_public_name_and_method_has_a_docstring(package: str) -> None:
    assert _undocumented(importlib.import_module(package)) == []
