"""The command line of the per-event micro-benchmarks: ``--events N`` and ``--json``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any


def line(key: str, value: Any) -> str:
    return f"{key:>22}  {value}"


def run(
    doc: str, measure: Callable[[int], dict[str, Any]], show: Callable[[str, Any], str] = line
) -> None:
    """Parse the options, measure, print the figures (one JSON object with ``--json``,
    else one ``show(key, value)`` line each)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    options = parser.parse_args()
    figures = measure(options.events)
    if options.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(show(key, value))
