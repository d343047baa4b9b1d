"""Prometheus metrics with Nuclio's names and labels.

Worker pools keep plain integer counters (no locks on the hot path); a
collector turns them into metric families when ``/metrics`` is scraped. Only
the per-trigger latency histogram is observed per event.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

from runtime.pool import WorkerPool
from sinks.base import SinkMetrics

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0, 30.0, 60.0)
_LABELS = ["function", "trigger_kind", "trigger_name"]


class LatencyHistogram:
    """A histogram observed only from the event loop's thread, so it needs no lock
    (prometheus_client's takes one per observation)."""

    __slots__ = ("_bounds", "_counts", "_sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self._bounds, value)] += 1
        self._sum += value

    def buckets(self) -> list[tuple[str, float]]:
        cumulative = 0
        out: list[tuple[str, float]] = []
        for bound, count in zip((*map(str, self._bounds), "+Inf"), self._counts, strict=True):
            cumulative += count
            out.append((bound, cumulative))
        return out

    @property
    def sum(self) -> float:
        return self._sum


@dataclass
class _PoolEntry:
    labels: list[str]
    pool: WorkerPool


class _PoolCollector(Collector):
    def __init__(self) -> None:
        self.entries: list[_PoolEntry] = []
        self.latencies: list[tuple[list[str], LatencyHistogram]] = []

    def collect(self) -> Iterator[Metric]:
        def counter(name: str, doc: str, attr: str) -> Metric:
            family = CounterMetricFamily(name, doc, labels=_LABELS)
            for e in self.entries:
                family.add_metric(e.labels, getattr(e.pool.stats, attr))
            return family

        handled = CounterMetricFamily("nuclio_processor_handled_events",
                                      "Events handled by the function, by result",
                                      labels=[*_LABELS, "result"])
        for e in self.entries:
            handled.add_metric([*e.labels, "success"], e.pool.stats.handled_success)
            handled.add_metric([*e.labels, "failure"], e.pool.stats.handled_failure)
        yield handled
        yield counter("nuclio_processor_worker_allocation_success_immediate",
                      "Worker allocations that found an idle worker", "allocation_immediate")
        yield counter("nuclio_processor_worker_allocation_success_after_wait",
                      "Worker allocations that waited for a worker", "allocation_after_wait")
        yield counter("nuclio_processor_worker_allocation_timeout",
                      "Events rejected because no worker freed up in time",
                      "allocation_timeout")
        waited = GaugeMetricFamily("nuclio_processor_worker_allocation_wait_duration_ms_sum",
                                   "Total time events waited for a worker, in milliseconds",
                                   labels=_LABELS)
        for e in self.entries:
            waited.add_metric(e.labels, e.pool.stats.allocation_wait_seconds * 1000.0)
        yield waited
        yield counter("nuclio_processor_worker_allocation_queue_full",
                      "Events dropped because the bounded wait queue was full",
                      "allocation_queue_full")
        yield counter("nuclio_processor_event_timeouts", "Events that overran eventTimeout",
                      "event_timeouts")
        yield counter("nuclio_processor_worker_crashes",
                      "Workers that died (crash, kill) and were replaced", "worker_crashes")
        yield counter("nuclio_processor_worker_restarts", "Replacement workers started",
                      "worker_restarts")
        duration = SummaryMetricFamily("nuclio_processor_event_duration_seconds",
                                       "Time from allocation request to response",
                                       labels=_LABELS)
        busy = GaugeMetricFamily("nuclio_processor_workers_busy", "Workers running an event",
                                 labels=_LABELS)
        total = GaugeMetricFamily("nuclio_processor_workers", "Workers in the pool",
                                  labels=_LABELS)
        for e in self.entries:
            duration.add_metric(e.labels, e.pool.stats.duration_count,
                                e.pool.stats.duration_seconds_sum)
            busy.add_metric(e.labels, e.pool.busy_workers)
            total.add_metric(e.labels, e.pool.size)
        yield duration
        yield busy
        yield total
        latency = HistogramMetricFamily("nuclio_processor_event_latency_seconds",
                                        "End-to-end latency of events, per trigger",
                                        labels=_LABELS)
        for labels, histogram in self.latencies:
            latency.add_metric(labels, histogram.buckets(), histogram.sum)
        yield latency


class TriggerMetrics:
    """What a trigger observes itself: request latency and rejections."""

    def __init__(self, latency: LatencyHistogram, rejected: Counter, labels: list[str]
                 ) -> None:
        self.observe_latency = latency.observe
        self._rejected = rejected
        self._labels = labels
        self._rejected_children: dict[str, Any] = {}

    def rejected(self, reason: str) -> None:
        child = self._rejected_children.get(reason)
        if child is None:
            child = self._rejected_children[reason] = self._rejected.labels(*self._labels,
                                                                              reason)
        child.inc()


class Metrics:
    def __init__(self, function_name: str) -> None:
        self.function_name = function_name
        self.registry = CollectorRegistry(auto_describe=False)
        self._pools = _PoolCollector()
        self.registry.register(self._pools)
        self._rejected = Counter("nuclio_processor_rejected_events",
                                 "Events rejected before reaching the function, by reason",
                                 [*_LABELS, "reason"], registry=self.registry)
        self._sink_items = Counter("nuclio_processor_sink_items",
                                   "Items a sink sent on or dropped (with the reason)",
                                   [*_LABELS, "sink_kind", "outcome", "reason"],
                                   registry=self.registry)

    def add_pool(self, trigger_kind: str, trigger_name: str, pool: WorkerPool) -> None:
        self._pools.entries.append(
            _PoolEntry([self.function_name, trigger_kind, trigger_name], pool))

    def for_trigger(self, trigger_kind: str, trigger_name: str) -> TriggerMetrics:
        labels = [self.function_name, trigger_kind, trigger_name]
        histogram = LatencyHistogram(LATENCY_BUCKETS)
        self._pools.latencies.append((labels, histogram))
        return TriggerMetrics(histogram, self._rejected, labels)

    def for_sink(self, trigger_kind: str, trigger_name: str, sink_kind: str) -> SinkMetrics:
        return SinkMetrics(self._sink_items,
                           [self.function_name, trigger_kind, trigger_name, sink_kind])
