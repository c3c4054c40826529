"""The documentation site (mkdocs.yml, docs/): it builds with ``--strict`` (no broken link
or anchor, no docstring the API reference cannot read), loads nothing from the internet, and
its API reference lists every public name."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import loom_kernel
import loom_studio
from tests.conftest import REPO

# what a page may load: a <script src>, <link href> or CSS url() off this site is a CDN
EXTERNAL_LOAD = re.compile(
    r"""<script[^>]+src=["']https?://|<link[^>]+href=["']https?://|url\(["']?https?://"""
)


def test_the_site_builds_strictly_and_offline(tmp_path: Path) -> None:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    pages = list(tmp_path.rglob("*.html")) + list(tmp_path.rglob("*.css"))
    assert len(pages) > 20
    loading = [page for page in pages if EXTERNAL_LOAD.search(page.read_text(errors="replace"))]
    assert loading == []
    assert (tmp_path / "js-sdk" / "index.html").is_file()
    nav = (REPO / "mkdocs.yml").read_text()
    for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):  # a tutorial page each
        assert (tmp_path / "tutorials" / notebook.stem / "index.html").is_file(), notebook
        assert f"tutorials/{notebook.stem}.md" in nav, f"add {notebook.stem} to mkdocs.yml's nav"
    assert "def open_runtime" not in (tmp_path / "api" / "index.html").read_text()  # no source
    assert "open_runtime" in (tmp_path / "api" / "index.html").read_text()


def test_the_api_reference_lists_every_public_name() -> None:
    listed = set(re.findall(r"^::: (\S+)$", (REPO / "docs" / "api.md").read_text(), re.M))
    public = {f"loom_kernel.{name}" for name in loom_kernel.__all__ if name != "__version__"}
    public |= {f"loom_studio.{name}" for name in loom_studio.__all__}
    assert public - listed == set(), "add them to docs/api.md"
    assert listed - public == set(), "docs/api.md lists names that are not public"


def test_every_entry_of_the_api_reference_ends_with_an_example() -> None:
    text = (REPO / "docs" / "api.md").read_text()
    entries = re.split(r"^::: \S+$", text, flags=re.M)[1:]
    names = re.findall(r"^::: (\S+)$", text, re.M)
    bare = [name for name, body in zip(names, entries, strict=True) if "```python" not in body]
    assert bare == [], "give each an example in docs/api.md"
