"""Nuclio batch mode: events gathered into one handler call.

A batch goes to a worker when ``batchSize`` events are waiting or ``timeout``
after the first one arrived, whichever is first; each caller gets the
response whose ``event_id`` matches its event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from runtime.events import RawEvent
from runtime.function import Result
from runtime.responses import RawResponse


class Batcher:
    def __init__(self, submit: Callable[[list[RawEvent]], Awaitable[Result]], size: int,
                 timeout: float) -> None:
        self._submit = submit
        self._size = size
        self._timeout = timeout
        self._events: list[RawEvent] = []
        self._futures: list[asyncio.Future[RawResponse]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, raw: RawEvent) -> RawResponse:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[RawResponse] = loop.create_future()
        self._events.append(raw)
        self._futures.append(fut)
        if len(self._events) >= self._size:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._timeout, self._flush)
        return await fut

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        events, futures = self._events, self._futures
        self._events, self._futures = [], []
        if events:
            task = asyncio.get_running_loop().create_task(self._run(events, futures))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, events: list[RawEvent],
                   futures: list[asyncio.Future[RawResponse]]) -> None:
        try:
            results = await self._submit(events)
        except Exception as exc:
            for fut in futures:
                if not fut.done():
                    fut.set_exception(exc)
            return
        assert isinstance(results, list)
        for fut, response in zip(futures, results, strict=True):
            if not fut.done():
                fut.set_result(response)
