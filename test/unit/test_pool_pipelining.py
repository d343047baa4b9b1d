"""The pool's bookkeeping with ``events_per_worker`` > 1, on stand-in workers whose events
finish when the test says so (the real process workers are covered end to end in
test/e2e/test_pipelining.py)."""

from __future__ import annotations

import asyncio
import random

from runtime.events import RawEvent
from runtime.function import Result
from runtime.logger import Logger
from runtime.pool import WorkerLost, WorkerPool
from runtime.responses import RawResponse


class HeldWorker:
    """Runs an event until the test finishes it; remembers what it holds."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.held: list[asyncio.Future[Result]] = []
        self.peak = 0

    async def load(self) -> None: ...

    async def init(self) -> None: ...

    async def run(self, payload: object, timeout: float | None) -> Result:
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self.held.append(fut)
        self.peak = max(self.peak, len(self.held))
        try:
            return await fut
        finally:
            self.held.remove(fut)

    async def stop(self, timeout: float) -> None: ...

    def kill(self) -> None: ...


def event(n: int) -> RawEvent:
    return RawEvent(str(n), b"", "", {}, {}, "POST", "/", "/", 0.0, "http", "t")


async def ready_pool(size: int, depth: int, workers: list[HeldWorker]) -> WorkerPool:
    """A started pool whose workers (and their replacements) are appended to ``workers``."""
    def factory(worker_id: str) -> HeldWorker:
        worker = HeldWorker(worker_id)
        workers.append(worker)
        return worker
    pool = WorkerPool("t", factory, size, availability_timeout=5.0, event_timeout=None,
                      max_waiting=100, logger=Logger("test"), events_per_worker=depth)
    await pool.load()
    await pool.init()
    return pool


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_spreads_then_fills_and_returns_every_slot() -> None:
    async def main() -> None:
        workers: list[HeldWorker] = []
        pool = await ready_pool(2, 3, workers)
        rng = random.Random(7)
        tasks = [asyncio.ensure_future(pool.submit(event(i))) for i in range(2)]
        await settle()
        # Two events on two workers: one each, before any worker gets a second.
        assert [len(w.held) for w in workers] == [1, 1]
        tasks += [asyncio.ensure_future(pool.submit(event(i))) for i in range(2, 9)]
        await settle()
        assert [len(w.held) for w in workers] == [3, 3] and pool.waiting == 3
        for _ in range(200):  # finish at random, add more: never above 3 per worker
            busy = [w for w in workers if w.held]
            if busy:
                worker = rng.choice(busy)
                worker.held[0].set_result(RawResponse(200, {}, b"ok", "text/plain"))
            if rng.random() < 0.5:
                tasks.append(asyncio.ensure_future(pool.submit(event(0))))
            await settle()
        while any(w.held for w in workers):
            for worker in workers:
                for fut in list(worker.held):
                    fut.set_result(RawResponse(200, {}, b"ok", "text/plain"))
            await settle()
        await asyncio.gather(*tasks)
        assert max(w.peak for w in workers) == 3
        assert pool.busy_workers == 0 and pool.waiting == 0
        assert pool.stats.handled_success == len(tasks)
    asyncio.run(main())


def test_event_never_started_runs_on_the_replacement() -> None:
    async def main() -> None:
        workers: list[HeldWorker] = []
        pool = await ready_pool(1, 2, workers)
        running = asyncio.ensure_future(pool.submit(event(1)))
        queued = asyncio.ensure_future(pool.submit(event(2)))
        await settle()
        first = workers[0]
        first.held[0].set_exception(WorkerLost(500, "the worker process exited"))
        first.held[1].set_exception(WorkerLost(503, "never started", started=False))
        for _ in range(50):  # the replacement starts, takes the queued event
            await asyncio.sleep(0.01)
            if len(workers) == 2 and workers[1].held:
                break
        assert len(workers) == 2, "replaced once, not once per lost event"
        workers[1].held[0].set_result(RawResponse(200, {}, b"ok", "text/plain"))
        lost, rerun = await running, await queued
        assert isinstance(lost, RawResponse) and lost.status == 500
        assert isinstance(rerun, RawResponse) and rerun.status == 200
        assert pool.stats.worker_crashes == 1 and pool.stats.worker_restarts == 1
        assert pool.stats.handled_failure == 1 and pool.stats.handled_success == 1
    asyncio.run(main())
