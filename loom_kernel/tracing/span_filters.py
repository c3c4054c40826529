"""Filters of span store queries: checked arguments, and the SQL they become."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from ..errors import LoomError

__all__ = [
    "TraceFilters",
    "Where",
    "attribute_path",
    "check_age",
    "check_count",
    "check_limit",
    "check_status",
    "check_text",
    "duration_ns",
    "epoch_ns",
    "is_number",
]


class TraceFilters:
    """The WHERE (on spans) and HAVING (on whole traces) clauses of a traces query."""

    def __init__(self) -> None:
        self._where: list[str] = []
        self._having: list[str] = []
        self._where_params: list[Any] = []
        self._having_params: list[Any] = []

    def where(self, condition: str, *params: Any) -> None:
        self._where.append(condition)
        self._where_params.extend(params)

    def having(self, condition: str, *params: Any) -> None:
        self._having.append(condition)
        self._having_params.extend(params)

    @property
    def sql(self) -> str:
        where = " WHERE " + " AND ".join(self._where) if self._where else ""
        having = " HAVING " + " AND ".join(self._having) if self._having else ""
        return f"{where} GROUP BY trace_id{having}"

    @property
    def params(self) -> list[Any]:
        return [*self._where_params, *self._having_params]


def check_count(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise LoomError(f"{what}={value!r}: use an int >= 1")
    return value


def check_age(value: Any) -> float:
    if not is_number(value) or value < 0:
        raise LoomError(f"settled={value!r}: use a number of seconds >= 0")
    return float(value)


class Where:
    """The WHERE clause of a query, built one condition at a time."""

    def __init__(self) -> None:
        self.conditions: list[str] = []
        self.params: list[Any] = []

    def add(self, condition: str, *params: Any) -> None:
        self.conditions.append(condition)
        self.params.extend(params)

    @property
    def sql(self) -> str:
        return " WHERE " + " AND ".join(self.conditions) if self.conditions else ""


def check_status(status: Any) -> str:
    if status not in ("ok", "error", "unset"):
        raise LoomError(f"status={status!r}: use 'ok', 'error' or 'unset'")
    return str(status)


def duration_ns(min_duration_ms: Any) -> int:
    if not is_number(min_duration_ms) or min_duration_ms < 0:
        raise LoomError(f"min_duration_ms={min_duration_ms!r}: use a number >= 0")
    return int(min_duration_ms * 1e6)


def attribute_path(attribute: Any) -> tuple[str, Any]:
    if not (isinstance(attribute, tuple) and len(attribute) == 2):
        raise LoomError(f"attribute={attribute!r}: use a (key, value) pair")
    key, value = attribute
    if not isinstance(key, str) or not key or '"' in key:
        raise LoomError(f"attribute={attribute!r}: use a non-empty str key without '\"'")
    if not isinstance(value, str | int | float | bool):
        raise LoomError(f"attribute={attribute!r}: compare with a str, int, float or bool value")
    return f'$."{key}"', value


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_limit(limit: Any) -> None:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 100_000:
        raise LoomError(f"limit={limit!r}: use an int from 1 to 100000")


def check_text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise LoomError(f"{what}={value!r}: use a non-empty str")
    return value


def epoch_ns(value: Any, what: str) -> int:
    if isinstance(value, timedelta):
        return int((time.time() - value.total_seconds()) * 1e9)
    if isinstance(value, datetime):
        return int(value.timestamp() * 1e9)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value * 1e9)
    raise LoomError(f"{what}={value!r}: use epoch seconds, a datetime or a timedelta")
