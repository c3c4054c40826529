"""The studio's server behind Jupyter: only requests carrying the proxy's secret get in.

A real studio server on a free port of 127.0.0.1, asked over real HTTP and websocket
connections (Tornado's clients, on the test's loop)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from loom_kernel import load_config
from loom_studio.access import SECRET_HEADER, require_secret
from loom_studio.app import serve
from loom_studio.feed import StudioFeed

pytestmark = pytest.mark.timeout(60)

SECRET = "s3cret-for-this-test"
PATHS = ["/", "/api/live", "/static/js/bokeh.min.js"]


@pytest.fixture
async def studio(project: Path) -> AsyncIterator[str]:
    """The studio's server with a secret, as Jupyter starts it; its base URL."""
    server = serve(load_config(project / "loom.toml"), port=0, feed=StudioFeed(), secret=SECRET)
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


async def fetch(url: str, **headers: str) -> Any:
    request = HTTPRequest(url, headers=headers, follow_redirects=False)
    return await AsyncHTTPClient(force_instance=True).fetch(request, raise_error=False)


@pytest.mark.parametrize("path", PATHS)
async def test_a_request_without_the_secret_is_refused(studio: str, path: str) -> None:
    response = await fetch(studio + path)
    assert response.code == 403
    assert b"Open the studio through Jupyter" in response.body


async def test_a_wrong_secret_is_refused(studio: str) -> None:
    response = await fetch(f"{studio}/api/live", **{SECRET_HEADER: SECRET + "x"})
    assert response.code == 403


@pytest.mark.parametrize("path", PATHS)
async def test_a_request_with_the_secret_is_served(studio: str, path: str) -> None:
    response = await fetch(studio + path, **{SECRET_HEADER: SECRET})
    assert response.code == 200


async def test_the_page_is_served_whatever_name_the_browser_gives_jupyter(studio: str) -> None:
    # through the proxy, Host and Origin are Jupyter's (a JupyterHub's name, say)
    page = await fetch(
        studio + "/",
        **{SECRET_HEADER: SECRET, "Host": "hub.example.org", "Origin": "https://hub.example.org"},
    )
    assert page.code == 200


async def test_the_live_endpoint_answers_json(studio: str) -> None:
    response = await fetch(f"{studio}/api/live", **{SECRET_HEADER: SECRET})
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert json.loads(response.body) == {
        "bus": None, "events_per_s": 0.0, "agents": [], "topics": []
    }  # fmt: skip


async def test_a_websocket_without_the_secret_is_refused(studio: str) -> None:
    with pytest.raises(HTTPClientError) as refused:
        await websocket_connect(studio.replace("http", "ws", 1) + "/ws")
    assert refused.value.code == 403


async def test_without_a_secret_the_studio_serves_everyone_on_localhost(project: Path) -> None:
    server = serve(load_config(project / "loom.toml"), port=0, feed=StudioFeed())
    try:
        response = await fetch(f"http://127.0.0.1:{server.port}/api/live")
    finally:
        server.stop()
    assert response.code == 200


def test_an_empty_secret_is_not_a_secret() -> None:
    with pytest.raises(ValueError, match="empty secret"):
        require_secret(object(), "")  # type: ignore[arg-type]
