"""The inline components' stylesheets: Panel's files as data: URLs, whatever URL asks for them.

The notebook behaviour itself (loading, live updates, stopping) is tested in a real
JupyterLab: ``tests/jupyterlab/test_notebooks.py``.
"""

from __future__ import annotations

import base64
from pathlib import Path

from bokeh.models import ImportedStyleSheet
from panel.io.resources import CDN_DIST, LOCAL_DIST

from loom_studio.notebook import _data_url, _dist_file, _InlineStylesheets

REPO_EMPTY = Path(__file__).resolve().parent / "builder"  # a folder without agents


def _decoded(url: str) -> str:
    kind, _, payload = url.partition(";base64,")
    assert kind == "data:text/css"
    return base64.b64decode(payload).decode()


def test_a_panel_stylesheet_becomes_a_data_url_with_its_images_inline() -> None:
    path = _dist_file(f"{CDN_DIST}css/loading.css?v=1.9.4")
    assert path is not None and path.name == "loading.css"
    css = _decoded(_data_url(path))
    assert "../assets/" not in css  # the spinners it masks with
    assert "url('data:image/svg+xml;base64," in css


def test_urls_outside_panels_files_stay_as_they_are() -> None:
    for url in (
        "https://example.org/theme.css",
        "data:text/css;base64,Cg==",
        f"{CDN_DIST}css/no-such-file.css",
        f"{CDN_DIST}../../../../etc/hosts",
    ):
        assert _dist_file(url) is None, url


def test_a_documents_stylesheets_are_inline_and_found_by_either_url() -> None:
    cache = _InlineStylesheets({})
    sheet = ImportedStyleSheet(url=f"{CDN_DIST}bundled/theme/default.css")
    cache[sheet.url] = sheet
    assert sheet.url.startswith("data:text/css;base64,")
    # Panel asks for the same file by its local URL when it updates a pane
    local = f"{LOCAL_DIST}bundled/theme/default.css"
    assert local in cache and cache[local] is sheet
    other = ImportedStyleSheet(url="https://example.org/theme.css")
    cache[other.url] = other
    assert cache["https://example.org/theme.css"].url == "https://example.org/theme.css"


async def test_a_component_no_page_shows_is_never_connected() -> None:
    # under nbval (no front end) the wait ends at its timeout and says so
    from loom_studio.builder.view import Builder
    from loom_studio.feed import StudioFeed

    component = Builder(project=REPO_EMPTY, feed=StudioFeed())
    assert await component.connected(timeout=0.1) is False
