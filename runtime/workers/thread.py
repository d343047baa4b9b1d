"""Thread workers: sync handlers on dedicated threads, for I/O-bound code.

Each worker owns a thread, a context and its own ``init_context`` run, like a
Nuclio worker. A thread cannot be killed: on an event timeout the caller gets
408 at once, the thread is abandoned (it exits when the handler returns, and
its late result is dropped) and a fresh worker takes its place.

With pipelining (``eventsPerWorker`` > 1) a worker's queue holds its next events,
so its thread starts the next one as soon as it returns, without waiting for the
event loop to hand it over. They run in order; the timeout of each counts from when
its thread starts it, and an event still queued when the worker is abandoned never
ran and is failed as such, so the pool runs it on another worker.

Without pipelining (Nuclio's allocation, the default) events that find every worker
busy wait in the pool's ``WaitingLine``, and a thread that finishes an event takes
the oldest of them itself (runtime/waiting_line.py): the loop learns of it with the
finished event's result, and arms the taken event's timeout then.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any

from runtime.function import FunctionRunner, FunctionSettings, Payload, Result
from runtime.handler import LoadedHandler
from runtime.pool import WorkerLost, WorkerStartError
from runtime.waiting_line import LineEntry, WaitingLine

_STOP = object()


def _resolve(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


# One queued event as the loop tracks it: its future, timeout and sequence number.
_Run = tuple[asyncio.Future[Any], float | None, int]


class ThreadWorker:
    def __init__(self, worker_id: str, loaded: LoadedHandler, settings: FunctionSettings,
                 line: WaitingLine | None = None) -> None:
        self.worker_id = worker_id
        self._line = line
        # The entry the thread took from the line last: ``kill`` fails it too, in case the
        # loop has not yet heard of it.
        self._taken: LineEntry | None = None
        self._loaded = loaded
        self._settings = settings
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._abandoned = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: FunctionRunner | None = None
        # Events given to the thread and not yet answered, oldest (the running one) first;
        # the thread writes the sequence number of the event it starts into ``_started``.
        self._runs: collections.deque[_Run] = collections.deque()
        self._sequence = itertools.count(1).__next__
        self._started = 0
        # Taken by the thread to start an event and by ``kill`` to abandon the thread, so
        # that an event is either started or failed as never started, not both.
        self._start_lock = threading.Lock()
        self._timer: asyncio.TimerHandle | None = None

    async def load(self) -> None:
        """The handler was imported by the processor already."""

    async def init(self) -> None:
        self._loop = asyncio.get_running_loop()
        ready = self._loop.create_future()
        self._thread = threading.Thread(target=self._main, args=(ready,), daemon=True,
                                        name=f"{self._settings.trigger_name}-worker-{self.worker_id}")
        self._thread.start()
        await ready

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        """Runs ``callback(*args)`` on the event loop's thread."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # a closed loop: the processor is gone
            self._loop.call_soon_threadsafe(callback, *args)

    def _main(self, ready: asyncio.Future[None]) -> None:
        private_loop = (asyncio.new_event_loop()
                        if self._loaded.is_async or self._loaded.init_is_async else None)
        runner = FunctionRunner(self._loaded, self._settings, self.worker_id)
        self._runner = runner
        try:
            runner.init_sync(private_loop)
        except BaseException as exc:
            self._post(_resolve, ready, None, WorkerStartError(
                f"init_context raised {type(exc).__name__}: {exc}"))
            return
        self._post(_resolve, ready, None, None)
        get, line, queued = self._queue.get, self._line, self._queue
        while True:
            item = get()
            if item is _STOP:
                runner.terminate()
                return
            payload, fut, sequence = item
            with self._start_lock:
                if self._abandoned:
                    return  # queued behind an abandoned event: failed on the loop already
                self._started = sequence
            while True:
                result = runner.run_sync(payload, private_loop)
                if self._abandoned:
                    return
                entry = None
                if line is not None and len(line) and queued.empty():
                    with self._start_lock:
                        if self._abandoned:
                            return
                        entry = line.take(self)
                        if entry is not None:
                            self._taken = entry
                            self._started = sequence = self._sequence()
                self._post(self._on_result, fut, result, entry, sequence)
                if entry is None:
                    break
                payload, fut = entry.payload, entry.future

    async def run(self, payload: Payload, timeout: float | None) -> Result:
        assert self._loop is not None
        if self._abandoned:
            raise WorkerLost(503, "the worker was replaced before this event started",
                             started=False)
        fut: asyncio.Future[Result] = self._loop.create_future()
        self._enqueue(payload, fut, timeout)
        return await fut

    def start_entry(self, entry: LineEntry) -> None:
        """The pool hands this idle worker the oldest waiting event (``entry.future``
        gets its result)."""
        if self._abandoned:
            _resolve(entry.future, None, WorkerLost(
                503, "the worker was replaced before this event started", started=False))
            return
        self._enqueue(entry.payload, entry.future, entry.timeout)

    def _enqueue(self, payload: Payload, fut: asyncio.Future[Any], timeout: float | None
                 ) -> None:
        sequence = self._sequence()
        runs = self._runs
        runs.append((fut, timeout, sequence))
        self._queue.put((payload, fut, sequence))
        if len(runs) == 1:
            self._rearm()

    def _on_result(self, fut: asyncio.Future[Result], result: Result,
                   taken: LineEntry | None, sequence: int) -> None:
        runs = self._runs
        if runs and runs[0][0] is fut:
            runs.popleft()
            if taken is not None and not self._abandoned:
                # The thread took (and started) the next waiting event: it runs here now.
                runs.append((taken.future, taken.timeout, sequence))
                with self._start_lock:  # ``kill`` finds it in ``runs`` from now on
                    if self._taken is taken:
                        self._taken = None
                assert self._line is not None
                self._line.taken(self, taken)
            self._rearm()  # the thread has started the next one, if any
        _resolve(fut, result, None)

    def _rearm(self) -> None:
        """Only the oldest event's timeout is armed: it is the one the thread runs."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._runs:
            fut, timeout, _ = self._runs[0]
            if timeout:
                assert self._loop is not None
                self._timer = self._loop.call_later(timeout, self._on_timeout, fut, timeout)

    def _on_timeout(self, fut: asyncio.Future[Result], timeout: float) -> None:
        self._timer = None
        if not fut.done():
            fut.set_exception(WorkerLost(408, f"event timed out after {timeout:g}s"))
            self.kill()

    def kill(self) -> None:
        """Abandons the thread; the events it holds fail: those it started as lost with
        the worker, the ones still queued as never started (the pool runs them again)."""
        with self._start_lock:
            if not self._abandoned and self._thread is not None and self._thread.is_alive():
                self._abandoned = True
            started = self._started
            taken = self._taken
        if taken is not None:  # taken from the line; the loop may not know of it yet
            _resolve(taken.future, None, WorkerLost(
                500, "the worker was replaced while this event ran"))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._runs:
            fut, _, sequence = self._runs.popleft()
            _resolve(fut, None, WorkerLost(500, "the worker was replaced while this event ran")
                     if sequence <= started else WorkerLost(
                         503, "the worker was lost before this event started", started=False))

    async def stop(self, timeout: float) -> None:
        if self._thread is None or self._abandoned or not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, timeout)
