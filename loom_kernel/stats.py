"""Latency recording and percentiles for ``statistics()`` records."""

from __future__ import annotations

from array import array

__all__ = ["LatencyRecorder", "percentile"]


def percentile(sorted_values: list[float], q: float) -> float:
    """The ``q``-th percentile (0..100) of already sorted values, nearest-rank; 0.0 if empty."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class LatencyRecorder:
    """Keeps the last ``size`` samples (seconds) in a ring; percentiles over that window."""

    __slots__ = ("_index", "_samples", "_size", "count")

    def __init__(self, size: int = 4096):
        self._samples = array("d")
        self._size = size
        self._index = 0
        self.count = 0

    def record(self, seconds: float) -> None:
        self.count += 1
        if len(self._samples) < self._size:
            self._samples.append(seconds)
        else:
            self._samples[self._index] = seconds
            self._index = (self._index + 1) % self._size

    def percentiles_ms(self, *qs: float) -> tuple[float, ...]:
        """Percentiles in milliseconds over the recent window, e.g. ``(p50, p99)``."""
        values = sorted(self._samples)
        return tuple(round(percentile(values, q) * 1000, 4) for q in qs)
