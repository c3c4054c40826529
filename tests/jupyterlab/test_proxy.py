"""How Jupyter starts the studio: jupyter-server-proxy's settings from our entry point."""

from __future__ import annotations

import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from loom_studio.access import SECRET_ENV, SECRET_HEADER
from loom_studio.lab import proxy

# what jupyter-server-proxy puts into the templates of a command, environment and headers
TEMPLATE = {"port": 43210, "unix_socket": "", "base_url": "/user/ada/"}


def test_the_entry_point_names_the_setup() -> None:
    (entry,) = entry_points(group="jupyter_serverproxy_servers", name=proxy.NAME)
    assert entry.load() is proxy.setup


def test_each_server_gets_its_own_secret_in_the_environment_and_the_headers() -> None:
    first, second = proxy.setup(), proxy.setup()
    secret = first["environment"][SECRET_ENV]
    assert first["request_headers_override"] == {SECRET_HEADER: secret}
    assert len(secret) >= 40
    assert second["environment"][SECRET_ENV] != secret


def test_the_studio_opens_in_a_lab_tab_from_our_launcher_card_only() -> None:
    settings = proxy.setup()
    assert settings["launcher_entry"] == {"enabled": False}
    assert settings["absolute_url"] is False
    assert settings["timeout"] >= 30


def test_the_command_runs_the_studio_with_jupyters_python_on_localhost(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    command = [part.format(**TEMPLATE) for part in proxy.command(43210)]
    assert command[:3] == [sys.executable, "-m", "loom_studio"]
    options = dict(zip(command[3::2], command[4::2], strict=True))
    assert options == {"--port": "43210", "--address": "127.0.0.1", "--project": str(tmp_path)}


def test_a_folder_with_braces_survives_the_templates(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = tmp_path / "notes {draft}"
    folder.mkdir()
    monkeypatch.chdir(folder)
    command = [part.format(**TEMPLATE) for part in proxy.command(43210)]
    assert command[-1] == str(folder)


def test_outside_a_jupyter_server_the_project_is_the_working_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    assert proxy.project_folder() == os.getcwd()
