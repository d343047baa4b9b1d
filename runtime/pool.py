"""A bounded pool of handler workers, with Nuclio's allocation semantics.

A trigger asks its pool to run an event; the pool hands the event to an idle
worker, or waits up to the availability timeout for one (0: fail at once),
and replaces any worker that crashed or overran the event timeout so that a
bad event costs that event only.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

from runtime.function import Payload, Result
from runtime.logger import Logger
from runtime.pool_types import (
    PoolStats,
    Worker,
    WorkerLost,
    WorkerStartError,
    WorkerTiming,
    WorkerUnavailable,
)
from runtime.waiting_line import LineEntry, LineWorker, WaitingLine

__all__ = ["Worker", "WorkerFactory", "WorkerLost", "WorkerPool", "WorkerStartError",
           "WorkerUnavailable"]

WorkerFactory = Callable[[str], Worker]

# How long at least an event waits for a worker when it must run again because the
# pipelined worker holding it died first (a replacement starts in well under a second).
RERUN_WAIT = 10.0


class _Expired(Exception):
    """The availability timeout ran out for a waiting event."""


def _expire(fut: asyncio.Future[Worker]) -> None:
    if not fut.done():
        fut.set_exception(_Expired())


class WorkerPool:
    """``events_per_worker`` (1 by default, Nuclio's model) is how many events one worker
    may hold at once; above 1 a worker is handed its next event while it runs the
    current one (pipelining), and an event goes to the least loaded worker.
    ``line``: waiting events are kept in a ``WaitingLine`` that the workers (thread and
    process kinds) are served from as they finish, instead of futures the loop hands
    workers to."""

    def __init__(self, name: str, factory: WorkerFactory, size: int, *,
                 availability_timeout: float, event_timeout: float | None,
                 max_waiting: int, logger: Logger, events_per_worker: int = 1,
                 line: WaitingLine | None = None) -> None:
        self.name = name
        self.size = size
        self.events_per_worker = events_per_worker
        self.stats = PoolStats()
        # Per worker index (a replacement keeps its predecessor's index, as in Nuclio).
        self.worker_timings = {str(i): WorkerTiming() for i in range(size)}
        self._factory = factory
        self._availability_timeout = availability_timeout
        self._event_timeout = event_timeout
        self._max_waiting = max_waiting
        self._logger = logger
        self._idle: list[Worker] = []  # workers with no event
        self._partial: list[Worker] = []  # workers with room for another event (pipelining)
        self._load: dict[Worker, int] = {}  # events held, per worker holding any
        self._dead: set[Worker] = set()  # replaced workers whose other events still fail
        self._waiters: collections.deque[asyncio.Future[Worker]] = collections.deque()
        self._line = line
        self._loop = asyncio.get_running_loop()  # pools are built on the processor's loop
        if line is not None:
            line.attach(self._loop, self.taken_from_line, self._line_expired)
        self._all: dict[str, Worker] = {}
        self._inflight = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self._replacing: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.ready = False

    @property
    def inflight(self) -> int:
        return self._inflight

    @property
    def waiting(self) -> int:
        """Events waiting for a worker right now."""
        return len(self._waiters) + (len(self._line) if self._line is not None else 0)

    @property
    def busy_workers(self) -> int:
        return len(self._all) - len(self._idle)

    # -- life cycle -------------------------------------------------------------
    async def load(self) -> None:
        """Phase one: every worker imports the handler (errors here are config errors)."""
        workers = [self._factory(str(i)) for i in range(self.size)]
        for worker in workers:
            self._all[worker.worker_id] = worker
        await self._all_or_nothing([w.load() for w in workers])

    async def init(self) -> None:
        """Phase two: every worker runs ``init_context``; then the pool is ready."""
        workers = list(self._all.values())
        await self._all_or_nothing([w.init() for w in workers])
        self._idle.extend(reversed(workers))  # pop() hands out worker 0 first
        self.ready = True

    async def _all_or_nothing(self, steps: list[Coroutine[Any, Any, None]]) -> None:
        results = await asyncio.gather(*steps, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            for worker in self._all.values():
                worker.kill()
            raise errors[0]

    async def drain(self, timeout: float) -> bool:
        """Waits for accepted events to finish; False if the timeout ran out first."""
        try:
            await asyncio.wait_for(self._drained.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def stop(self, timeout: float) -> None:
        self._stopping = True
        self.ready = False
        for task in list(self._replacing):
            task.cancel()
        waiting = list(self._waiters)
        if self._line is not None:
            waiting += [entry.future for entry in self._line.take_all()]
        for fut in waiting:
            if not fut.done():
                fut.set_exception(WorkerUnavailable("the processor is shutting down"))
        workers = list(self._all.values())
        await asyncio.gather(*(w.stop(timeout) for w in workers), return_exceptions=True)
        self._all.clear()
        self._idle.clear()
        self._partial.clear()

    # -- events ---------------------------------------------------------------------
    async def submit(self, payload: Payload) -> Result:
        """Runs one event (or batch); always returns a response, never raises for the
        function's faults. Raises WorkerUnavailable when no worker frees up in time."""
        self._inflight += 1
        self._drained.clear()
        started = time.perf_counter()
        stats = self.stats
        stats.allocation_available_percent_sum += len(self._idle) * 100 // self.size
        timing: WorkerTiming | None = None
        run_started = started
        rerun = False
        try:
            while True:
                entry: LineEntry | None = None
                worker = self._take()
                if worker is not None:
                    stats.allocation_immediate += 1
                elif self._line is not None:
                    entry = self._enter_line(payload, rerun)
                else:
                    worker = await self._wait_for_worker(rerun)
                try:
                    if entry is None:
                        assert worker is not None
                        # Per worker index, as Nuclio exports it; finished in ``finally``
                        # with the same clock reading as the event's own duration.
                        timing = self.worker_timings.get(worker.worker_id)
                        run_started = time.perf_counter()
                        result = await worker.run(payload, self._event_timeout)
                    else:
                        try:
                            result = await self._line_result(entry)
                        finally:
                            worker = entry.worker  # None while the entry is still waiting
                            if worker is not None:
                                timing = self.worker_timings.get(worker.worker_id)
                                run_started = entry.started
                except WorkerLost as lost:
                    assert worker is not None
                    if lost.replace:
                        self._replace(worker, lost.message)
                    else:
                        self._release(worker)
                    if not lost.started and not self._stopping:
                        timing, rerun = None, True
                        continue  # queued behind the lost event, never run: run it elsewhere
                    self._count_lost(lost, payload)
                    return lost.response(payload)
                except BaseException:
                    # An entry refused or cancelled while it waited has no worker.
                    if worker is not None:
                        self._replace(worker, "event cancelled")
                    raise
                self._release(worker)
                self._count(result)
                return result
        finally:
            now = time.perf_counter()
            stats.duration_seconds_sum += now - started
            stats.duration_count += 1
            if timing is not None:
                timing.seconds += now - run_started
                timing.count += 1
            self._inflight -= 1
            if not self._inflight:
                self._drained.set()

    # -- the waiting line (thread and process workers) ---------------------------------
    def _enter_line(self, payload: Payload, rerun: bool) -> LineEntry:
        """As ``_wait_for_worker``, but the event itself waits, in the line the workers
        serve; ``_line_result`` awaits it."""
        assert self._line is not None
        timeout = self._admit(rerun, len(self._line))
        entry = LineEntry(payload, self._loop.create_future(), self._event_timeout, timeout,
                          rerun=rerun)
        self._line.put(entry)
        return entry

    def _admit(self, rerun: bool, waiting: int) -> float:
        """How long an event may wait for a worker; raises WorkerUnavailable (counted)
        when it may not wait at all or the line is full."""
        timeout = max(self._availability_timeout, RERUN_WAIT) if rerun \
            else self._availability_timeout
        if timeout <= 0 or self._stopping:
            self.stats.allocation_timeout += 1
            raise WorkerUnavailable("no worker is available")
        if waiting >= self._max_waiting and not rerun:
            self.stats.allocation_queue_full += 1
            raise WorkerUnavailable("too many events are waiting for a worker")
        return timeout

    def _line_expired(self, entry: LineEntry) -> None:
        """The line withdrew ``entry``: its availability timeout ran out."""
        if not entry.future.done():
            self.stats.allocation_timeout += 1
            entry.future.set_exception(WorkerUnavailable(
                f"no worker became available within {entry.wait:g}s"))

    async def _line_result(self, entry: LineEntry) -> Result:
        try:
            result: Result = await entry.future
            return result
        except asyncio.CancelledError:
            assert self._line is not None
            self._line.withdraw(entry)  # unless a worker took it already
            raise

    def taken_from_line(self, worker: Worker, entry: LineEntry) -> None:
        """``worker`` took ``entry`` as it finished its event (on the loop; from the
        worker, before that event's own release, or from ``_release``): it stays busy."""
        stats = self.stats
        stats.allocation_after_wait += 1
        stats.allocation_wait_seconds += time.monotonic() - entry.enqueued
        if self._all.get(worker.worker_id) is worker and worker not in self._dead:
            self._load[worker] = self._load.get(worker, 0) + 1

    def _take(self) -> Worker | None:
        """An idle worker, else one with room for another event, else None."""
        if self._idle:
            worker = self._idle.pop()
        elif self._partial:
            worker = self._partial.pop()
        else:
            return None
        held = self._load.get(worker, 0) + 1
        self._load[worker] = held
        if held < self.events_per_worker:
            self._partial.append(worker)
        return worker

    def _count(self, result: Result) -> None:
        if isinstance(result, list):
            for r in result:
                self._count(r)
        elif result.status >= 500:
            self.stats.handled_failure += 1
        else:
            self.stats.handled_success += 1

    def _count_lost(self, lost: WorkerLost, payload: Payload) -> None:
        n = len(payload) if isinstance(payload, list) else 1
        self.stats.handled_failure += n
        if lost.status == 408:
            self.stats.event_timeouts += n
        else:
            self.stats.worker_crashes += 1

    async def _wait_for_worker(self, rerun: bool = False) -> Worker:
        """``rerun``: an event that a pipelined worker held but never started, because
        the worker died. It was accepted already, so it goes first in line, is not
        refused for a full line, and waits at least RERUN_WAIT for the replacement."""
        stats = self.stats
        timeout = self._admit(rerun, len(self._waiters))
        loop = self._loop
        fut: asyncio.Future[Worker] = loop.create_future()
        if rerun:
            self._waiters.appendleft(fut)
        else:
            self._waiters.append(fut)
        started = time.monotonic()
        # A timer on the future itself: cheaper than asyncio.wait_for on this busy path.
        timer = loop.call_later(timeout, _expire, fut)
        try:
            worker = await fut
        except _Expired:
            stats.allocation_timeout += 1
            raise WorkerUnavailable(
                f"no worker became available within {timeout:g}s") from None
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._release(fut.result())
            raise
        finally:
            timer.cancel()
            if not fut.done():
                fut.cancel()
        stats.allocation_after_wait += 1
        stats.allocation_wait_seconds += time.monotonic() - started
        return worker

    def _release(self, worker: Worker) -> None:
        """The worker finished one event: its slot goes to a waiting event, or back."""
        if self._all.get(worker.worker_id) is not worker or worker in self._dead:
            return  # replaced meanwhile
        held = self._load.pop(worker, 1) - 1  # (a fresh worker from _restart holds none)
        if held > 0:
            self._load[worker] = held
            if held == self.events_per_worker - 1:
                self._partial.append(worker)
        else:
            if self.events_per_worker > 1 and worker in self._partial:
                self._partial.remove(worker)
            if self._line is not None:
                entry = self._line.take(worker)
                if entry is not None:  # the oldest waiting event, on the loop's side
                    self.taken_from_line(worker, entry)
                    cast(LineWorker, worker).start_entry(entry)
                    return
            self._idle.append(worker)
        waiters = self._waiters
        while waiters and (self._idle or self._partial):
            fut = waiters.popleft()
            if not fut.done():
                taken = self._take()
                assert taken is not None
                fut.set_result(taken)

    # -- replacing broken workers --------------------------------------------------
    def worker_exited(self, worker: Worker, reason: str) -> None:
        """Called by a worker that died while idle (e.g. killed by the OOM killer)."""
        if self._all.get(worker.worker_id) is worker and worker in self._idle:
            self.stats.worker_crashes += 1
            self._replace(worker, reason)

    def _replace(self, worker: Worker, reason: str) -> None:
        worker.kill()
        if self._stopping or self._all.get(worker.worker_id) is not worker \
                or worker in self._dead:
            return  # (a pipelined worker's other events come here too: replace it once)
        self._dead.add(worker)
        self._load.pop(worker, None)
        for free in (self._idle, self._partial):
            if worker in free:
                free.remove(worker)
        self._logger.warn_with("Replacing worker", pool=self.name, worker_id=worker.worker_id,
                               reason=reason)
        task = self._loop.create_task(self._restart(worker.worker_id))
        self._replacing.add(task)
        task.add_done_callback(self._replacing.discard)

    async def _restart(self, worker_id: str) -> None:
        delay = 0.05
        while not self._stopping:
            old = self._all.get(worker_id)
            if old is not None:
                self._dead.discard(old)
            worker = self._factory(worker_id)
            self._all[worker_id] = worker
            try:
                await worker.load()
                await worker.init()
            except asyncio.CancelledError:
                worker.kill()
                raise
            except Exception as exc:
                worker.kill()
                self._logger.error_with("Worker restart failed; retrying", pool=self.name,
                                        worker_id=worker_id, error=str(exc), retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.stats.worker_restarts += 1
            self._release(worker)
            return
