"""The status document: one JSON object describing the function, the processor and every
trigger, pool and sink, as ``/api/status`` and ``/api/events`` serve it.

Everything in it is read from state the processor keeps anyway (pool stats, trigger
metrics, ``status()`` of triggers and sinks). A sampler (``tick``, once a second) feeds
the sliding windows behind rates and percentiles, so no per-event hook exists for the
page. The document never carries environment variables, attributes or headers, and
every URL in it has its user:password removed.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Protocol

from core.metrics import FrameMetrics, Metrics
from processor.status.windows import CounterWindow, HistogramWindow, History, rounded
from runtime.pool import WorkerPool
from triggers.base import Trigger

RATE_SECONDS = 10
LATENCY_SECONDS = 60
HISTORY_POINTS = 180


class Running(Protocol):
    """A trigger and its pool, as the processor holds them."""

    trigger: Trigger
    pool: WorkerPool


@dataclass
class FunctionInfo:
    name: str
    namespace: str
    handler: str
    runtime: str
    worker_kind: str


@dataclass
class _Windows:
    """Sliding windows of one trigger, fed by the sampler."""

    events: CounterWindow = field(default_factory=lambda: CounterWindow(RATE_SECONDS))
    errors: CounterWindow = field(default_factory=lambda: CounterWindow(RATE_SECONDS))
    latency: HistogramWindow | None = None
    frames_read: CounterWindow = field(default_factory=lambda: CounterWindow(RATE_SECONDS))
    frames_processed: CounterWindow = field(
        default_factory=lambda: CounterWindow(RATE_SECONDS))
    frames_dropped: CounterWindow = field(default_factory=lambda: CounterWindow(RATE_SECONDS))
    frame_latency: HistogramWindow | None = None
    events_history: History = field(default_factory=lambda: History(HISTORY_POINTS))
    p99_history: History = field(default_factory=lambda: History(HISTORY_POINTS))


@functools.cache
def _version() -> str:
    """Asked when the first document is built, not at start-up: finding the installed
    distribution scans every ``*.dist-info`` on sys.path (several ms of a cold start)."""
    try:
        return metadata.version("nuclio-py-processor")
    except metadata.PackageNotFoundError:
        return "unknown"


class StatusBuilder:
    def __init__(self, function: FunctionInfo, running: Callable[[], Sequence[Running]],
                 metrics: Metrics, phase: Callable[[], str], *, preview: bool = True,
                 functions: Callable[[], list[FunctionInfo]] | None = None) -> None:
        self.function = function
        # Several hosted functions: the document lists them all, and each trigger says
        # which function it belongs to.
        self.functions = functions
        self.running = running
        self._metrics = metrics
        self._phase = phase
        self.preview_enabled = preview
        self._started = time.monotonic()
        self._windows: dict[str, _Windows] = {}

    # -- sampling (once a second) --------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for r in self.running():
            key = _key(r)
            windows = self._windows.get(key)
            if windows is None:
                windows = self._windows[key] = _Windows()
            stats = r.pool.stats
            windows.events.add(now, stats.handled_success + stats.handled_failure)
            windows.errors.add(now, stats.handled_failure)
            histogram = r.trigger.metrics.latency
            if windows.latency is None:
                windows.latency = HistogramWindow(histogram.bounds, LATENCY_SECONDS)
            windows.latency.add(histogram.counts())
            windows.events_history.add(rounded(windows.events.last_step(), 1))
            frames = r.trigger.metrics.frames_if_any
            if frames is not None:
                windows.frames_read.add(now, frames.read)
                windows.frames_processed.add(now, frames.processed)
                windows.frames_dropped.add(now, sum(frames.dropped_by.values()))
                if windows.frame_latency is None:
                    windows.frame_latency = HistogramWindow(frames.latency.bounds,
                                                            LATENCY_SECONDS)
                windows.frame_latency.add(frames.latency.counts())
            # Frame triggers' sparkline shows frame latency (their events are frames).
            shown = windows.frame_latency if frames is not None else windows.latency
            assert shown is not None
            p99 = shown.percentile(0.99, last_seconds=1)
            windows.p99_history.add(rounded(p99 * 1000.0 if p99 is not None else None))

    # -- the document ---------------------------------------------------------------------
    def document(self) -> dict[str, Any]:
        phase = self._phase()
        extra = {"functions": [vars(f).copy() for f in self.functions()]} \
            if self.functions is not None else {}
        return {
            "time": round(time.time(), 3),
            "function": vars(self.function).copy(),
            **extra,
            "processor": {"version": _version(), "pid": os.getpid(),
                          "uptime_seconds": round(time.monotonic() - self._started, 1),
                          "ready": phase == "ready", "phase": phase,
                          "preview": self.preview_enabled},
            "triggers": [clean_urls(self._trigger(r, phase)) for r in self.running()],
        }

    def _trigger(self, r: Running, phase: str) -> dict[str, Any]:
        trigger, pool = r.trigger, r.pool
        windows = self._windows.get(_key(r)) or _Windows()
        source = trigger.source_state()
        stats = pool.stats
        latency = windows.latency
        doc: dict[str, Any] = {
            "name": trigger.name, "kind": trigger.kind,
            "state": _state(phase, pool, source), "source": source,
            "listen": trigger.listen_addresses(),
            "pool": {"size": pool.size, "busy": pool.busy_workers, "waiting": pool.waiting,
                     "restarts": stats.worker_restarts, "crashes": stats.worker_crashes},
            "events": {"handled": {"success": stats.handled_success,
                                   "failure": stats.handled_failure},
                       "rejected": trigger.metrics.rejected_counts(),
                       "event_timeouts": stats.event_timeouts},
            "rates": {"window_seconds": RATE_SECONDS,
                      "events_per_second": round(windows.events.rate(), 2),
                      "errors_per_second": round(windows.errors.rate(), 2)},
            "latency": {"window_seconds": LATENCY_SECONDS,
                        "count": latency.count() if latency else 0,
                        "p50_ms": _ms(latency.percentile(0.5) if latency else None),
                        "p99_ms": _ms(latency.percentile(0.99) if latency else None)},
            "history": {"events_per_second": windows.events_history.values(),
                        "p99_ms": windows.p99_history.values()},
            "frames": None, "preview": False, "sink": None,
        }
        if self.functions is not None:
            doc["function"] = getattr(r, "function", "")
        frames = trigger.metrics.frames_if_any
        if frames is not None:
            doc["frames"] = _frames(frames, windows)
            doc["preview"] = self.preview_enabled
        sink = trigger.sink
        if sink is not None:
            doc["sink"] = {"kind": sink.kind, **sink.status(),
                           **self._metrics.sink_counts(trigger.kind, trigger.name)}
        return doc


def _key(r: Running) -> str:
    """Trigger names are unique within a function, not across hosted functions."""
    return f"{getattr(r, 'function', '')}/{r.trigger.name}"


def _state(phase: str, pool: WorkerPool, source: dict[str, Any] | None) -> str:
    if phase == "draining":
        return "draining"
    if not pool.ready:
        return "starting"
    if source is not None and source.get("state") == "down":
        return "error"
    return "ready"


def _frames(frames: FrameMetrics, windows: _Windows) -> dict[str, Any]:
    latency = windows.frame_latency
    return {"read": frames.read, "received": frames.received, "processed": frames.processed,
            "delivered": frames.delivered, "dropped": dict(frames.dropped_by),
            "sink_skipped": dict(frames.skipped_by), "reconnects": frames.reconnects,
            "input_fps": round(windows.frames_read.rate(), 2),
            "processed_fps": round(windows.frames_processed.rate(), 2),
            "drop_fps": round(windows.frames_dropped.rate(), 2),
            "latency_p50_ms": _ms(latency.percentile(0.5) if latency else None),
            "latency_p99_ms": _ms(latency.percentile(0.99) if latency else None)}


def _ms(seconds: float | None) -> float | None:
    return rounded(seconds * 1000.0 if seconds is not None else None)


# ``scheme://user:password@`` anywhere in a string (a URL, or an error message quoting one).
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]*@")


def clean_urls(value: Any) -> Any:
    """Every URL in every string loses its user:password, also inside error messages (a
    safety net: sinks' and triggers' ``status()`` should already report public URLs)."""
    if isinstance(value, dict):
        return {k: clean_urls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_urls(v) for v in value]
    if isinstance(value, str) and "@" in value and "://" in value:
        return _CREDENTIALS.sub(r"\1", value)
    return value
