"""The command line of the benchmarks: ``--events N`` (or another size) and ``--json``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any


def line(key: str, value: Any) -> str:
    return f"{key:>22}  {value}"


def run(
    doc: str,
    measure: Callable[[Any], dict[str, Any]],
    show: Callable[[str, Any], str] = line,
    *,
    size: str = "events",
    default: float = 200_000,
) -> None:
    """Parse the options, measure, print the figures (one JSON object with ``--json``,
    else one ``show(key, value)`` line each). ``measure`` is given ``--<size>`` (of the
    type of ``default``)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(f"--{size}", type=type(default), default=default)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    options = parser.parse_args()
    figures = measure(getattr(options, size))
    if options.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(show(key, value))
