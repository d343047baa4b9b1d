"""Nuclio's own Prometheus families, under Nuclio's exact names and constant labels.

Those of Nuclio's pull sink (``pkg/processor/metricsink/prometheus/``): dashboards and
alerts written for Nuclio query these sample names with ``instance, trigger_kind,
trigger_id, namespace, function`` (plus ``result`` or ``worker_index``). They are read
from the pools' plain counters at scrape time, like the rest of core/metrics.py.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, Metric, SummaryMetricFamily

from runtime.pool import WorkerPool

# Nuclio's constant labels on its own families, in its order.
NUCLIO_LABELS = ["instance", "trigger_kind", "trigger_id", "namespace", "function"]


@dataclass
class PoolEntry:
    labels: list[str]  # ours: function, trigger_kind, trigger_name
    nuclio_labels: list[str]  # Nuclio's: instance, trigger_kind, trigger_id, namespace, function
    pool: WorkerPool


def instance_name(template: str | None, namespace: str, name: str) -> str:
    """Nuclio's ``instance`` label: the prometheusPull sink's ``instanceName`` attribute
    (``{{ .Namespace }}`` and ``{{ .Name }}`` filled in), else NUCLIO_FUNCTION_INSTANCE,
    else ``<namespace>-<name>``."""
    if not template:
        template = os.environ.get("NUCLIO_FUNCTION_INSTANCE") or "{{ .Namespace }}-{{ .Name }}"
    for key, value in (("Namespace", namespace), ("Name", name)):
        template = re.sub(r"\{\{\s*\." + key + r"\s*\}\}", value.replace("\\", r"\\"),
                          template)
    return template


def _untyped(name: str, doc: str, labels: list[str], entries: list[PoolEntry],
             value: Callable[[PoolEntry], float]) -> Metric:
    """A family exported under exactly ``name``: Nuclio's Go client declares counters whose
    names end in ``_count`` or ``_sum``, which Python's client would rename (``_total``), so
    these are untyped; the sample names, which is what queries use, are Nuclio's."""
    family = Metric(name, doc, "unknown")
    for e in entries:
        family.add_sample(name, dict(zip(labels, e.nuclio_labels, strict=True)), value(e))
    return family


def nuclio_families(entries: list[PoolEntry]) -> Iterator[Metric]:
    """Nuclio's families (pkg/processor/metricsink/prometheus/{trigger,worker}.go)."""
    labels = NUCLIO_LABELS
    handled = CounterMetricFamily("nuclio_processor_handled_events",
                                  "Events the function handled, by result",
                                  labels=[*labels, "result"])
    allocation = CounterMetricFamily("nuclio_processor_worker_allocation",
                                     "Worker allocation requests, by result",
                                     labels=[*labels, "result"])
    for e in entries:
        stats = e.pool.stats
        handled.add_metric([*e.nuclio_labels, "success"], stats.handled_success)
        handled.add_metric([*e.nuclio_labels, "failure"], stats.handled_failure)
        allocation.add_metric([*e.nuclio_labels, "success_immediate"],
                              stats.allocation_immediate)
        allocation.add_metric([*e.nuclio_labels, "success_after_wait"],
                              stats.allocation_after_wait)
        # A full wait queue is our extra way for an allocation to fail: Nuclio's result
        # set is closed, so it counts as error_timeout here (and apart in our family).
        allocation.add_metric([*e.nuclio_labels, "error_timeout"],
                              stats.allocation_timeout + stats.allocation_queue_full)
    yield handled
    yield allocation
    yield _untyped("nuclio_processor_worker_allocation_count",
                   "Worker allocation requests", labels, entries,
                   lambda e: _allocations(e.pool))
    yield _untyped("nuclio_processor_worker_allocation_wait_duration_milliseconds_sum",
                   "Milliseconds events waited for a worker, in total", labels,
                   entries, lambda e: e.pool.stats.allocation_wait_seconds * 1000.0)
    yield _untyped("nuclio_processor_worker_allocation_workers_available_percentage",
                   "Idle workers as a percentage of the pool at each allocation, added "
                   "up", labels, entries,
                   lambda e: e.pool.stats.allocation_available_percent_sum)
    duration = SummaryMetricFamily("nuclio_processor_handled_events_duration_milliseconds",
                                   "Milliseconds each worker spent running events",
                                   labels=[*labels, "worker_index"])
    for e in entries:
        for index, timing in e.pool.worker_timings.items():
            duration.add_metric([*e.nuclio_labels, index], timing.count,
                                timing.seconds * 1000.0)
    yield duration


def _allocations(pool: WorkerPool) -> int:
    stats = pool.stats
    return (stats.allocation_immediate + stats.allocation_after_wait
            + stats.allocation_timeout + stats.allocation_queue_full)
