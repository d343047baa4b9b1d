"""Rates and latency percentiles over sliding windows, from counters sampled once a second.

Nothing here runs per event: the status sampler reads counters and histogram buckets
that the hot path keeps anyway (pool stats, latency histograms, frame counters) once
a second, and rates and percentiles come from the difference between the newest
sample and the oldest one still in the window. With nobody looking, this costs a few
microseconds a second.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence


class CounterWindow:
    """Per-second samples of a monotonic counter; ``rate`` over the last ``seconds``."""

    __slots__ = ("_samples",)

    def __init__(self, seconds: int = 10) -> None:
        self._samples: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=seconds + 1)

    def add(self, now: float, value: float) -> None:
        self._samples.append((now, value))

    def rate(self) -> float:
        if len(self._samples) < 2:
            return 0.0
        (t0, v0), (t1, v1) = self._samples[0], self._samples[-1]
        return max(0.0, (v1 - v0) / (t1 - t0)) if t1 > t0 else 0.0

    def last_step(self) -> float:
        """The increase over the newest second (for sparklines)."""
        if len(self._samples) < 2:
            return 0.0
        (t0, v0), (t1, v1) = self._samples[-2], self._samples[-1]
        return max(0.0, (v1 - v0) / (t1 - t0)) if t1 > t0 else 0.0


def quantile(q: float, bounds: Sequence[float], counts: Sequence[float]) -> float | None:
    """The ``q`` quantile of observations in buckets (``counts`` per bucket, not
    cumulative; the last bucket is +Inf), interpolated linearly inside the bucket as
    Prometheus' ``histogram_quantile`` does. None without observations."""
    total = sum(counts)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for i, count in enumerate(counts):
        if count and seen + count >= rank:
            if i >= len(bounds):  # the +Inf bucket: the highest finite bound is all we know
                return bounds[-1]
            lower = bounds[i - 1] if i else 0.0
            return lower + (bounds[i] - lower) * ((rank - seen) / count)
        seen += count
    return bounds[-1]


class HistogramWindow:
    """Per-second snapshots of a histogram's bucket counts; percentiles over the last
    ``seconds`` from the difference between the newest and the oldest snapshot."""

    __slots__ = ("_bounds", "_samples")

    def __init__(self, bounds: Sequence[float], seconds: int = 60) -> None:
        self._bounds = tuple(bounds)
        self._samples: collections.deque[list[int]] = collections.deque(maxlen=seconds + 1)

    def add(self, counts: Sequence[int]) -> None:
        self._samples.append(list(counts))

    def _delta(self, oldest: int) -> list[int]:
        first, last = self._samples[oldest], self._samples[-1]
        return [b - a for a, b in zip(first, last, strict=True)]

    def percentile(self, q: float, *, last_seconds: int | None = None) -> float | None:
        if len(self._samples) < 2:
            return None
        oldest = 0 if last_seconds is None else max(0, len(self._samples) - 1 - last_seconds)
        return quantile(q, self._bounds, self._delta(oldest))

    def count(self) -> int:
        return sum(self._delta(0)) if len(self._samples) >= 2 else 0


def rounded(value: float | None, digits: int = 2) -> float | None:
    if value is None or math.isnan(value):
        return None
    return round(value, digits)


class History:
    """The last ``points`` per-second values of a series, for the page's sparklines."""

    __slots__ = ("_values",)

    def __init__(self, points: int = 180) -> None:
        self._values: collections.deque[float | None] = collections.deque(maxlen=points)

    def add(self, value: float | None) -> None:
        self._values.append(value)

    def values(self) -> list[float | None]:
        return list(self._values)
