"""The prebuilt JupyterLab extension: built from the sources as they are, shipped where
JupyterLab looks, found by the installed JupyterLab."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib

import pytest

from tests.conftest import PYTHON, REPO

pytestmark = pytest.mark.timeout(60)

SOURCES = REPO / "labextension"
BUNDLE = REPO / "loom_studio" / "labextension"


def package() -> dict:
    return json.loads((SOURCES / "package.json").read_text())


def test_the_shipped_bundle_was_built_from_the_current_sources() -> None:
    done = subprocess.run(
        [PYTHON, str(SOURCES / "stamp.py"), "--check"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr  # "... run `make labextension`"


def test_the_bundle_is_complete() -> None:
    built = json.loads((BUNDLE / "package.json").read_text())
    assert built["name"] == package()["name"]
    assert built["version"] == package()["version"]
    assert (BUNDLE / built["jupyterlab"]["_build"]["load"]).is_file()
    assert package()["jupyterlab"]["outputDir"] == "../loom_studio/labextension"


def test_the_wheel_ships_it_where_jupyterlab_looks() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    shared = project["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    target = f"share/jupyter/labextensions/{package()['name']}"
    assert shared["loom_studio/labextension"] == target
    assert shared["labextension/install.json"] == f"{target}/install.json"
    install = json.loads((SOURCES / "install.json").read_text())
    assert install["packageName"] == project["project"]["name"]
    jupyter = project["project"]["optional-dependencies"]["jupyter"]  # the extension's extra
    assert any(dep.startswith("jupyterlab>=4.6,<5") for dep in jupyter)


def test_the_installed_jupyterlab_finds_it_enabled() -> None:
    done = subprocess.run(
        [PYTHON, "-m", "jupyter", "labextension", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
    )
    listed = [
        line for line in (done.stdout + done.stderr).splitlines() if package()["name"] in line
    ]
    assert listed, done.stdout + done.stderr
    assert "enabled" in listed[0] and "OK" in listed[0], listed[0]
    assert f"v{package()['version']}" in listed[0]
