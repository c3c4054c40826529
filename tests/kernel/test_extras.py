"""Optional parts: a missing one's import names the pip extra that brings it."""

from __future__ import annotations

import sys

import pytest

from loom_kernel.errors import LoomError, MissingExtra
from loom_kernel.extras import EXTRAS, require


def test_an_installed_module_is_returned() -> None:
    assert require("json", "parsing") is sys.modules["json"]


def test_a_missing_module_names_its_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "litellm", None)  # as if it were not installed
    with pytest.raises(MissingExtra) as caught:
        require("litellm", "LLM calls")
    message = str(caught.value)
    assert (
        message == "LLM calls needs litellm, which is not installed: pip install 'loom-studio[llm]'"
    )
    assert isinstance(caught.value, LoomError) and isinstance(caught.value, ImportError)


def test_a_module_no_extra_brings_is_named_as_a_package() -> None:
    with pytest.raises(MissingExtra, match="pip install no_such_module_x"):
        require("no_such_module_x", "a test")


def test_an_import_error_inside_an_installed_module_is_not_hidden(tmp_path, monkeypatch) -> None:
    (tmp_path / "broken_extra_x.py").write_text("import no_such_dependency_y\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_y"):
        require("broken_extra_x", "a test")


def test_every_extra_named_is_one_the_package_declares() -> None:
    import tomllib
    from pathlib import Path

    declared = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert set(EXTRAS.values()) <= set(declared["project"]["optional-dependencies"])
