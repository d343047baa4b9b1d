"""The pool's vocabulary: what a worker is, how running an event on one can fail, and
what a pool counts (plain numbers on the hot path, read by the metrics endpoint at
scrape time: Nuclio's allocation and event statistics, per-worker run times)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from runtime.function import Payload, Result
from runtime.responses import error_response


class WorkerUnavailable(Exception):
    """No worker became free within the availability timeout (HTTP 503)."""


class WorkerStartError(Exception):
    """A worker could not load the handler or run ``init_context``."""

    def __init__(self, message: str, *, load_error: bool = False) -> None:
        super().__init__(message)
        self.load_error = load_error


class WorkerLost(Exception):
    """The event could not complete on this worker (timeout or crash).

    ``started=False``: the event was handed to the worker (queued behind another one in a
    pipelined worker, or given to it from the waiting line) and never began, so the pool
    runs it on another worker: a crash still costs one event."""

    def __init__(self, status: int, message: str, *, replace: bool = True,
                 started: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.replace = replace
        self.started = started

    def response(self, payload: Payload) -> Result:
        if isinstance(payload, list):
            return [error_response(self.status, self.message, raw.id) for raw in payload]
        return error_response(self.status, self.message, payload.id)


class Worker(Protocol):
    """Started in two phases so that a bad handler is reported before anything listens:
    ``load`` imports the handler, ``init`` runs ``init_context``."""

    worker_id: str

    async def load(self) -> None: ...

    async def init(self) -> None: ...

    async def run(self, payload: Payload, timeout: float | None) -> Result: ...

    async def stop(self, timeout: float) -> None: ...

    def kill(self) -> None: ...


@dataclass
class PoolStats:
    """Plain counters on the hot path; the metrics endpoint reads them at scrape time."""

    allocation_immediate: int = 0
    allocation_after_wait: int = 0
    allocation_timeout: int = 0
    allocation_queue_full: int = 0
    allocation_wait_seconds: float = 0.0
    handled_success: int = 0
    handled_failure: int = 0
    event_timeouts: int = 0
    worker_crashes: int = 0
    worker_restarts: int = 0
    duration_seconds_sum: float = 0.0
    duration_count: int = 0
    # Nuclio's allocation statistic: the percentage of idle workers (an integer, as
    # Nuclio truncates it) added up over every allocation request.
    allocation_available_percent_sum: int = 0


class WorkerTiming:
    """Time one worker (by index) spent running events: Nuclio exports it per worker."""

    __slots__ = ("count", "seconds")

    def __init__(self) -> None:
        self.seconds = 0.0
        self.count = 0
