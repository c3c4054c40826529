"""The fingerprint of the extension's sources, recorded beside the bundle built from them.

    python labextension/stamp.py --write   # after a build (`make labextension` does it)
    python labextension/stamp.py --check   # exit 1 when the bundle is not from these sources

The bundle (``loom_studio/labextension``) is committed, so installing Loom needs no node;
the fingerprint says which sources it was built from. It covers what decides the build:
``package.json``, ``yarn.lock``, ``tsconfig.json``, ``.yarnrc.yml``, ``src/`` and ``style/``
(a file's path and bytes; not its time, which a fresh clone does not keep).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUNDLE = HERE.parent / "loom_studio" / "labextension"
STAMP = BUNDLE / "sources.sha256"
FILES = ("package.json", "yarn.lock", "tsconfig.json", ".yarnrc.yml")
FOLDERS = ("src", "style")


def sources(root: Path = HERE) -> list[Path]:
    """The files the build reads, in a stable order."""
    found = [root / name for name in FILES]
    for folder in FOLDERS:
        found += sorted(path for path in (root / folder).rglob("*") if path.is_file())
    return found


def fingerprint(root: Path = HERE) -> str:
    """SHA-256 over each source's path (relative to ``root``) and content."""
    digest = hashlib.sha256()
    for path in sources(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return digest.hexdigest()


def recorded() -> str | None:
    """The fingerprint the bundle was built from, if it says."""
    return STAMP.read_text().strip() if STAMP.is_file() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="record the current sources")
    action.add_argument("--check", action="store_true", help="compare the bundle with them")
    args = parser.parse_args()
    current = fingerprint()
    if args.write:
        STAMP.write_text(current + "\n")
        return 0
    if recorded() != current:
        print(
            f"{BUNDLE.relative_to(HERE.parent)} was not built from the sources in "
            f"{HERE.name}/: run `make labextension` (and commit the bundle)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
