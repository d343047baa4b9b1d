"""Runs one function's stored calls on its worker pool, at most ``maxInflight`` at once.

The dispatcher claims due calls from the store (which durably counts the attempt
first), builds the Nuclio event (``event.id`` = call id, the request as sent),
asks the pool, and records the outcome: success, a non-retryable failure, a
retry after back-off, or dead once the attempts are used up. Sync traffic keeps
the rest of the pool. A front door hosting several functions runs one
dispatcher per function over the processor's one store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

from invocations.config import RetryPolicy
from invocations.metrics import AsyncMetrics
from invocations.retry import backoff_delay, is_retryable, retry_after_seconds
from invocations.store import FINAL_STATES, Call, CallStore, Outcome, State, StoreUnavailable
from invocations.waiting import wait_event
from runtime.events import RawEvent
from runtime.pool import WorkerUnavailable
from runtime.responses import RawResponse

Submit = Callable[[RawEvent], Awaitable[Any]]


class Dispatcher:
    def __init__(self, function: str, store: CallStore, submit: Submit, max_inflight: int,
                 policy: RetryPolicy, metrics: AsyncMetrics, logger: Any, *,
                 trigger_kind: str = "http", trigger_name: str = "async",
                 on_final: Callable[[], None] = lambda: None,
                 heartbeat_interval: float | None = None) -> None:
        self.function = function
        self.max_inflight = max_inflight
        self.policy = policy
        self.metrics = metrics
        self._store = store
        self._submit = submit
        self._logger = logger
        self._trigger = (trigger_kind, trigger_name)
        self._on_final = on_final
        self._heartbeat = heartbeat_interval
        self._wake = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        # Attempts holding a worker (an attempt whose handler returned frees its slot
        # while its outcome is recorded, so the next claim shares that commit).
        self._busy = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def inflight(self) -> int:
        return self._busy

    def wake(self) -> None:
        """A call became due (accepted, re-queued): look now rather than at the next tick."""
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def stop_claiming(self) -> None:
        self._stopping = True
        self._wake.set()

    async def close(self, timeout: float) -> None:
        """Stops claiming; waits up to ``timeout`` for running attempts to be recorded."""
        self.stop_claiming()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout)
        for task in list(self._running):
            task.cancel()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            free = self.max_inflight - self._busy
            if free <= 0:
                await self._wake.wait()
                continue
            try:
                calls, next_due = await self._store.claim(self.function, free)
            except StoreUnavailable:
                calls, next_due = [], 1.0
            except Exception as exc:  # never let the loop die on a store bug
                self._logger.error_with("Async claim failed", function=self.function,
                                        error=repr(exc))
                calls, next_due = [], 1.0
            for call in calls:
                self._busy += 1
                task = asyncio.create_task(self._attempt(call))
                self._running.add(task)
                task.add_done_callback(self._done)
            if calls:
                continue
            await wait_event(self._wake, 5.0 if next_due is None else min(next_due, 5.0))

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wake.set()

    def _event(self, call: Call) -> RawEvent:
        url = f"{call.path}?{urlencode(call.query)}" if call.query else call.path
        return RawEvent(call.id, call.body, call.content_type, dict(call.headers),
                        dict(call.query), call.method, call.path, url, time.time(),
                        *self._trigger)

    async def _attempt(self, call: Call) -> None:
        started = time.time()
        if call.attempts == 1:
            self.metrics.queue_wait.observe(max(0.0, started - call.accepted_ns / 1e9))
        beat = asyncio.create_task(self._beat(call)) if self._heartbeat else None
        t0 = time.perf_counter()
        try:
            result: RawResponse = await self._submit(self._event(call))
            outcome = Outcome(result.status, dict(result.headers), result.body,
                              result.content_type, time.perf_counter() - t0)
        except WorkerUnavailable:
            outcome = Outcome(503, {}, b"", "text/plain", time.perf_counter() - t0)
        finally:
            if beat is not None:
                beat.cancel()
            self._busy -= 1
            self._wake.set()
        state, due_in = self._decide(call, outcome)
        for delay in (0.0, 0.5, 2.0):  # a store hiccup must not lose the outcome
            await asyncio.sleep(delay)
            try:
                await self._store.record(call, outcome, state, due_in)
                break
            except Exception as exc:  # StoreUnavailable, or a backend's own error
                self._logger.warn_with("Could not record an async outcome", call_id=call.id,
                                       error=f"{type(exc).__name__}: {exc}")
        else:
            return  # still "running" in the store: it runs again after a restart
        self._count(call, call.state)
        if call.state in FINAL_STATES:
            self._on_final()
        elif call.state == "retrying":
            self._wake.set()

    def _decide(self, call: Call, outcome: Outcome) -> tuple[State, float]:
        if is_retryable(self.policy, outcome.status):
            if call.attempts < call.max_attempts and not call.cancel_requested:
                retry_after = None
                for key, value in outcome.headers.items():
                    if key.lower() == "retry-after":
                        retry_after = retry_after_seconds(value)
                return "retrying", backoff_delay(self.policy, call.attempts, retry_after)
            return ("cancelled" if call.cancel_requested else "dead"), 0.0
        return ("succeeded" if outcome.status < 400 else "failed"), 0.0

    def _count(self, call: Call, state: str) -> None:
        m = self.metrics
        if state == "retrying":
            m.count("retried")
            return
        if state in FINAL_STATES:
            m.count(state)
            m.end_to_end.observe(max(0.0, time.time() - call.accepted_ns / 1e9))

    async def _beat(self, call: Call) -> None:
        assert self._heartbeat is not None
        while True:
            await asyncio.sleep(self._heartbeat)
            with contextlib.suppress(Exception):
                await self._store.heartbeat(call)
