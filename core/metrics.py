"""Prometheus metrics: Nuclio's families under Nuclio's exact names and labels, and ours.

Nuclio's (``nuclio_processor_handled_events_total``, ``..._worker_allocation_*``,
``..._handled_events_duration_milliseconds_*``; built in core/nuclio_metrics.py) carry
its constant labels ``instance, trigger_kind, trigger_id, namespace, function`` so that
dashboards and alerts written for Nuclio work unchanged; our extra families
(rejections, latency histograms, frames, sinks) keep ``function, trigger_kind,
trigger_name``.

Worker pools keep plain integer counters (no locks on the hot path); a
collector turns them into metric families when ``/metrics`` is scraped. Only
the per-trigger latency histogram is observed per event.
"""

from __future__ import annotations

import bisect
import time
import weakref
from collections.abc import Iterator
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

from core.nuclio_metrics import PoolEntry, instance_name, nuclio_families
from core.sink import SinkMetrics
from runtime.pool import WorkerPool

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

    @property
    def bounds(self) -> tuple[float, ...]:
        return self._bounds

    def counts(self) -> list[int]:
        """Observations per bucket (not cumulative; the last is +Inf), for the status
        page's sliding percentiles."""
        return list(self._counts)


class _PoolCollector(Collector):
    def __init__(self) -> None:
        self.entries: list[PoolEntry] = []
        self.latencies: list[tuple[list[str], LatencyHistogram]] = []

    def collect(self) -> Iterator[Metric]:
        yield from nuclio_families(self.entries)
        yield from self._ours()

    def _ours(self) -> Iterator[Metric]:
        def counter(name: str, doc: str, attr: str) -> Metric:
            family = CounterMetricFamily(name, doc, labels=_LABELS)
            for e in self.entries:
                family.add_metric(e.labels, getattr(e.pool.stats, attr))
            return family

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


class FrameMetrics:
    """Plain counters for a frame-streaming trigger (mjpeg, rtsp), read at scrape time.

    Frames are counted where they leave the pipeline: processed (the handler ran),
    dropped (by reason, never processed), sink-skipped (processed, but nothing to send).
    ``fps`` is the processing rate over the last whole second; ``processed`` can be
    ``rate()``d for any other window.
    """

    __slots__ = ("_fps_count", "_fps_second", "_last_fps", "delivered", "dropped_by",
                 "latency", "processed", "read", "received", "reconnects", "skipped_by")

    def __init__(self) -> None:
        self.read = 0  # from the source, before processing_factor / processing_interval
        self.reconnects = 0  # the source was lost and is being reconnected
        self.received = 0
        self.processed = 0
        self.delivered = 0
        self.dropped_by: dict[str, int] = {}
        self.skipped_by: dict[str, int] = {}
        self.latency = LatencyHistogram(LATENCY_BUCKETS)
        self._fps_second = 0
        self._fps_count = 0
        self._last_fps = 0

    def dropped(self, reason: str, amount: int = 1) -> None:
        self.dropped_by[reason] = self.dropped_by.get(reason, 0) + amount

    def sink_skipped(self, reason: str) -> None:
        self.skipped_by[reason] = self.skipped_by.get(reason, 0) + 1

    def frame_processed(self, now: float) -> None:
        self.processed += 1
        second = int(now)
        if second != self._fps_second:
            self._last_fps = self._fps_count if second == self._fps_second + 1 else 0
            self._fps_second = second
            self._fps_count = 0
        self._fps_count += 1

    def fps(self, now: float) -> int:
        """Frames processed in the last whole second (0 when nothing ran lately)."""
        second = int(now)
        if second == self._fps_second:
            return self._last_fps
        return self._fps_count if second == self._fps_second + 1 else 0


_POLICY_DROPS = {"superseded": 0, "busy": 0}


class _FrameCollector(Collector):
    def __init__(self) -> None:
        self.entries: list[tuple[list[str], FrameMetrics]] = []

    def collect(self) -> Iterator[Metric]:
        if not self.entries:
            return
        now = time.monotonic()
        read = CounterMetricFamily("nuclio_processor_frames_read",
                                   "Frames read from the source, before processing_factor",
                                   labels=_LABELS)
        reconnects = CounterMetricFamily("nuclio_processor_frame_source_reconnects",
                                         "Times the frame source was lost and reconnected",
                                         labels=_LABELS)
        received = CounterMetricFamily("nuclio_processor_frames_received",
                                       "Frames a trigger handed to its frame pipeline",
                                       labels=_LABELS)
        processed = CounterMetricFamily("nuclio_processor_frames_processed",
                                        "Frames the handler ran on", labels=_LABELS)
        delivered = CounterMetricFamily("nuclio_processor_frames_delivered",
                                        "Handler results handed to the sink, in frame order",
                                        labels=_LABELS)
        dropped = CounterMetricFamily("nuclio_processor_frames_dropped",
                                      "Frames dropped before or after processing, by reason",
                                      labels=[*_LABELS, "reason"])
        skipped = CounterMetricFamily("nuclio_processor_frames_sink_skipped",
                                      "Processed frames that sent nothing to the sink, "
                                      "by reason", labels=[*_LABELS, "reason"])
        fps = GaugeMetricFamily("nuclio_processor_frames_processing_fps",
                                "Frames processed in the last whole second", labels=_LABELS)
        latency = HistogramMetricFamily("nuclio_processor_frame_latency_seconds",
                                        "From reading a frame to handing its result to the "
                                        "sink (or discarding it without a sink)",
                                        labels=_LABELS)
        for labels, frames in self.entries:
            read.add_metric(labels, frames.read)
            reconnects.add_metric(labels, frames.reconnects)
            received.add_metric(labels, frames.received)
            processed.add_metric(labels, frames.processed)
            delivered.add_metric(labels, frames.delivered)
            # The drop policy's reasons are exported from the start (at 0), for rate().
            for reason, count in {**_POLICY_DROPS, **frames.dropped_by}.items():
                dropped.add_metric([*labels, reason], count)
            for reason, count in frames.skipped_by.items():
                skipped.add_metric([*labels, reason], count)
            fps.add_metric(labels, frames.fps(now))
            latency.add_metric(labels, frames.latency.buckets(), frames.latency.sum)
        yield from (read, reconnects, received, processed, delivered, dropped, skipped, fps,
                    latency)


class _WorkflowStepCollector(Collector):
    """``nuclio_processor_workflow_step_duration_seconds{function,workflow,step}``, one
    lock-free histogram per step (observed on the event loop only)."""

    def __init__(self) -> None:
        self.steps: dict[tuple[str, str, str], LatencyHistogram] = {}

    def observe(self, labels: tuple[str, str, str], seconds: float) -> None:
        histogram = self.steps.get(labels)
        if histogram is None:
            histogram = self.steps[labels] = LatencyHistogram(LATENCY_BUCKETS)
        histogram.observe(seconds)

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily("nuclio_processor_workflow_step_duration_seconds",
                                       "Duration of each workflow step, call included",
                                       labels=["function", "workflow", "step"])
        for labels, histogram in self.steps.items():
            family.add_metric(list(labels), histogram.buckets(), histogram.sum)
        yield family


_WORKFLOW_STEPS: weakref.WeakKeyDictionary[CollectorRegistry, _WorkflowStepCollector] = \
    weakref.WeakKeyDictionary()


class TriggerMetrics:
    """What a trigger observes itself: request latency and rejections."""

    def __init__(self, latency: LatencyHistogram, rejected: Counter, labels: list[str],
                 frames_collector: _FrameCollector | None = None,
                 registry: CollectorRegistry | None = None) -> None:
        self.observe_latency = latency.observe
        self.latency = latency
        # Where a trigger's own collectors (e.g. invocations' async metrics) register.
        self.registry = registry
        self.function_name = labels[0]
        self._rejected = rejected
        self._labels = labels
        self._rejected_children: dict[str, Any] = {}
        self._frames_collector = frames_collector
        self._frames: FrameMetrics | None = None

    @property
    def frames(self) -> FrameMetrics:
        """Frame counters, exported from first use (only frame triggers ask for them)."""
        if self._frames is None:
            self._frames = FrameMetrics()
            if self._frames_collector is not None:
                self._frames_collector.entries.append((self._labels, self._frames))
        return self._frames

    @property
    def frames_if_any(self) -> FrameMetrics | None:
        """The frame counters if this trigger streams frames (without creating them)."""
        return self._frames

    def rejected_counts(self) -> dict[str, int]:
        """Rejections so far by reason (read at status time, not counted twice)."""
        return {reason: int(child._value.get())
                for reason, child in self._rejected_children.items()}

    def rejected(self, reason: str) -> None:
        child = self._rejected_children.get(reason)
        if child is None:
            child = self._rejected_children[reason] = self._rejected.labels(*self._labels,
                                                                              reason)
        child.inc()


class Metrics:
    function_name: str
    namespace: str
    instance: str

    def __init__(self, function_name: str, namespace: str = "default",
                 instance: str | None = None) -> None:
        self.function_name = function_name
        self.namespace = namespace
        self.instance = instance or instance_name(None, namespace, function_name)
        self.registry = CollectorRegistry(auto_describe=False)
        self._pools = _PoolCollector()
        self.registry.register(self._pools)
        self._frames = _FrameCollector()
        self.registry.register(self._frames)
        self._rejected = Counter("nuclio_processor_rejected_events",
                                 "Events rejected before reaching the function, by reason",
                                 [*_LABELS, "reason"], registry=self.registry)
        self._sink_items = Counter("nuclio_processor_sink_items",
                                   "Items a sink sent on or dropped (with the reason)",
                                   [*_LABELS, "sink_kind", "outcome", "reason"],
                                   registry=self.registry)

    def for_function(self, function_name: str, namespace: str, instance: str) -> Metrics:
        """The same registry and families seen from another hosted function: its series
        carry its own ``function``/``namespace``/``instance`` labels, and nothing is
        registered twice (one processor, one ``/metrics``)."""
        return _FunctionView(self, function_name, namespace, instance)

    def add_pool(self, trigger_kind: str, trigger_name: str, pool: WorkerPool) -> None:
        self._pools.entries.append(PoolEntry(
            [self.function_name, trigger_kind, trigger_name],
            [self.instance, trigger_kind, trigger_name, self.namespace, self.function_name],
            pool))

    def for_trigger(self, trigger_kind: str, trigger_name: str) -> TriggerMetrics:
        labels = [self.function_name, trigger_kind, trigger_name]
        histogram = LatencyHistogram(LATENCY_BUCKETS)
        self._pools.latencies.append((labels, histogram))
        return TriggerMetrics(histogram, self._rejected, labels, self._frames, self.registry)

    def sink_counts(self, trigger_kind: str, trigger_name: str) -> dict[str, Any]:
        """Items the trigger's sink sent and dropped (by reason), read from its counter."""
        out: dict[str, Any] = {"sent": 0, "dropped": {}}
        want = {"function": self.function_name, "trigger_kind": trigger_kind,
                "trigger_name": trigger_name}
        for family in self._sink_items.collect():
            for sample in family.samples:
                labels = sample.labels
                if not sample.name.endswith("_total") or \
                        any(labels.get(k) != v for k, v in want.items()):
                    continue
                if labels["outcome"] == "sent":
                    out["sent"] += int(sample.value)
                else:
                    out["dropped"][labels["reason"]] = int(sample.value)
        return out

    def for_sink(self, trigger_kind: str, trigger_name: str, sink_kind: str) -> SinkMetrics:
        return SinkMetrics(self._sink_items,
                           [self.function_name, trigger_kind, trigger_name, sink_kind])

    def workflow_step(self, workflow: str, step: str, seconds: float) -> None:
        """One workflow step's duration as the workflow saw it (call included), exported
        from the first observation: most functions are not workflows. One collector per
        registry, so hosted functions' views of one registry share it."""
        collector = _WORKFLOW_STEPS.get(self.registry)
        if collector is None:
            collector = _WORKFLOW_STEPS[self.registry] = _WorkflowStepCollector()
            self.registry.register(collector)
        collector.observe((self.function_name, workflow, step), seconds)

_OWN = frozenset({"function_name", "namespace", "instance", "_root"})


class _FunctionView(Metrics):
    """``Metrics`` of a second (third...) hosted function: its own label values, and every
    other attribute read from and written to the first function's object. So state a
    method creates lazily (a collector registered on first use) exists once per
    registry, whichever function creates it."""

    def __init__(self, root: Metrics, function_name: str, namespace: str,
                 instance: str) -> None:
        object.__setattr__(self, "_root", root)
        object.__setattr__(self, "function_name", function_name)
        object.__setattr__(self, "namespace", namespace)
        object.__setattr__(self, "instance", instance)

    def __getattribute__(self, name: str) -> Any:
        if name in _OWN or name.startswith("__"):
            return object.__getattribute__(self, name)
        shared = vars(object.__getattribute__(self, "_root"))
        if name in shared:
            return shared[name]
        return object.__getattribute__(self, name)  # methods, bound to this view

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _OWN:
            object.__setattr__(self, name, value)
        else:
            setattr(object.__getattribute__(self, "_root"), name, value)
