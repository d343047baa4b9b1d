"""``nuclio_processor_async_*`` metrics: plain counters, turned into families at scrape.

One ``AsyncMetrics`` per function queue; one collector per registry exports them
all (a processor hosting several functions registers it once).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from core.metrics import LatencyHistogram

WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
OUTCOMES = ("accepted", "succeeded", "failed", "retried", "dead", "cancelled", "requeued",
            "duplicate")


class AsyncMetrics:
    def __init__(self, function: str, depth: Any) -> None:
        self.function = function
        self.depth = depth  # () -> int: calls stored and not final
        self.calls = dict.fromkeys(OUTCOMES, 0)
        self.rejected_by: dict[str, int] = {}
        self.callbacks: dict[str, int] = {}
        self.queue_wait = LatencyHistogram(WAIT_BUCKETS)
        self.end_to_end = LatencyHistogram(WAIT_BUCKETS)

    def count(self, outcome: str) -> None:
        self.calls[outcome] += 1

    def rejected(self, reason: str) -> None:
        self.rejected_by[reason] = self.rejected_by.get(reason, 0) + 1

    def callback(self, outcome: str) -> None:
        self.callbacks[outcome] = self.callbacks.get(outcome, 0) + 1


class _Collector(Collector):
    def __init__(self) -> None:
        self.entries: list[AsyncMetrics] = []

    def collect(self) -> Iterator[Any]:
        if not self.entries:
            return
        calls = CounterMetricFamily("nuclio_processor_async_calls",
                                    "Async calls by outcome", labels=["function", "outcome"])
        rejected = CounterMetricFamily("nuclio_processor_async_rejected",
                                       "Async requests refused before being stored, by reason",
                                       labels=["function", "reason"])
        callbacks = CounterMetricFamily("nuclio_processor_async_callbacks",
                                        "Callback POST attempts by outcome",
                                        labels=["function", "outcome"])
        depth = GaugeMetricFamily("nuclio_processor_async_queue_depth",
                                  "Async calls stored and not final (queued, retrying, running)",
                                  labels=["function"])
        wait = HistogramMetricFamily("nuclio_processor_async_queue_wait_seconds",
                                     "From acceptance to the first attempt's start",
                                     labels=["function"])
        e2e = HistogramMetricFamily("nuclio_processor_async_end_to_end_seconds",
                                    "From acceptance to the final outcome", labels=["function"])
        for m in self.entries:
            for outcome, n in m.calls.items():
                calls.add_metric([m.function, outcome], n)
            for reason, n in m.rejected_by.items():
                rejected.add_metric([m.function, reason], n)
            for outcome, n in m.callbacks.items():
                callbacks.add_metric([m.function, outcome], n)
            depth.add_metric([m.function], m.depth())
            wait.add_metric([m.function], m.queue_wait.buckets(), m.queue_wait.sum)
            e2e.add_metric([m.function], m.end_to_end.buckets(), m.end_to_end.sum)
        yield from (calls, rejected, callbacks, depth, wait, e2e)


_collectors: weakref.WeakKeyDictionary[CollectorRegistry, _Collector] = \
    weakref.WeakKeyDictionary()


def register(registry: CollectorRegistry | None, metrics: AsyncMetrics) -> None:
    """Exports ``metrics`` from ``registry`` (None: not exported, e.g. unit tests)."""
    if registry is None:
        return
    collector = _collectors.get(registry)
    if collector is None:
        collector = _collectors[registry] = _Collector()
        registry.register(collector)
    collector.entries.append(metrics)
