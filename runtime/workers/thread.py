"""Thread workers: sync handlers on dedicated threads, for I/O-bound code.

Each worker owns a thread, a context and its own ``init_context`` run, like a
Nuclio worker. A thread cannot be killed: on an event timeout the caller gets
408 at once, the thread is abandoned (it exits when the handler returns, and
its late result is dropped) and a fresh worker takes its place.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from typing import Any

from runtime.function import FunctionRunner, FunctionSettings, Payload, Result
from runtime.handler import LoadedHandler
from runtime.pool import WorkerLost, WorkerStartError

_STOP = object()


def _resolve(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


class ThreadWorker:
    def __init__(self, worker_id: str, loaded: LoadedHandler, settings: FunctionSettings) -> None:
        self.worker_id = worker_id
        self._loaded = loaded
        self._settings = settings
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._abandoned = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: FunctionRunner | None = None

    async def load(self) -> None:
        """The handler was imported by the processor already."""

    async def init(self) -> None:
        self._loop = asyncio.get_running_loop()
        ready = self._loop.create_future()
        self._thread = threading.Thread(target=self._main, args=(ready,), daemon=True,
                                        name=f"{self._settings.trigger_name}-worker-{self.worker_id}")
        self._thread.start()
        await ready

    def _post(self, fut: asyncio.Future[Any], result: Any, error: BaseException | None = None
              ) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # a closed loop: the processor is gone
            self._loop.call_soon_threadsafe(_resolve, fut, result, error)

    def _main(self, ready: asyncio.Future[None]) -> None:
        private_loop = (asyncio.new_event_loop()
                        if self._loaded.is_async or self._loaded.init_is_async else None)
        runner = FunctionRunner(self._loaded, self._settings, self.worker_id)
        self._runner = runner
        try:
            runner.init_sync(private_loop)
        except BaseException as exc:
            self._post(ready, None, WorkerStartError(
                f"init_context raised {type(exc).__name__}: {exc}"))
            return
        self._post(ready, None)
        get = self._queue.get
        while True:
            item = get()
            if item is _STOP:
                runner.terminate()
                return
            payload, fut = item
            result = runner.run_sync(payload, private_loop)
            if self._abandoned:
                return
            self._post(fut, result)

    async def run(self, payload: Payload, timeout: float | None) -> Result:
        assert self._loop is not None
        fut: asyncio.Future[Result] = self._loop.create_future()
        self._queue.put((payload, fut))
        timer = (self._loop.call_later(timeout, self._on_timeout, fut, timeout)
                 if timeout else None)
        try:
            return await fut
        finally:
            if timer is not None:
                timer.cancel()

    def _on_timeout(self, fut: asyncio.Future[Result], timeout: float) -> None:
        if not fut.done():
            fut.set_exception(WorkerLost(408, f"event timed out after {timeout:g}s"))
            self.kill()

    def kill(self) -> None:
        if not self._abandoned and self._thread is not None and self._thread.is_alive():
            self._abandoned = True

    async def stop(self, timeout: float) -> None:
        if self._thread is None or self._abandoned or not self._thread.is_alive():
            return
        self._queue.put(_STOP)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join, timeout)
