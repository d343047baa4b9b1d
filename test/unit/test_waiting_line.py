"""Nuclio's allocation on real thread workers, through the pool's waiting line: events
that find every worker busy wait in arrival order, the thread that finishes takes the
next one itself, the availability timeout still refuses, and a worker lost while it ran
an event it took costs that event only (runtime/waiting_line.py, runtime/workers/thread.py)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from runtime.events import RawEvent
from runtime.function import FunctionSettings
from runtime.logger import Logger
from runtime.pool import WorkerPool, WorkerUnavailable
from runtime.responses import RawResponse
from runtime.waiting_line import LineEntry, WaitingLine
from runtime.workers import build_pool

# The handler blocks until the test opens its gate, then answers with its event's body
# and the thread it ran on, and notes it finished; ``hang`` sleeps past any timeout.
HANDLER = """
import threading, time
gate = threading.Event()
finished = []

def handler(context, event):
    body = event.body.decode()
    if body == "hang":
        time.sleep(1.5)
    else:
        gate.wait(10)
    finished.append(body)
    return {"body": body, "thread": threading.current_thread().name}
"""


def event(body: str) -> RawEvent:
    return RawEvent(body, body.encode(), "text/plain", {}, {}, "POST", "/", "/", 0.0,
                    "http", "t")


async def thread_pool(tmp_path: Path, size: int, *, availability: float = 5.0,
                      event_timeout: float | None = None) -> tuple[WorkerPool, Any]:
    (tmp_path / "gated.py").write_text(HANDLER)
    settings = FunctionSettings("gated:handler", str(tmp_path), "f", "default", "http", "t",
                                40, "text")
    pool = build_pool("thread", settings, size, availability_timeout=availability,
                      event_timeout=event_timeout, max_waiting=100, logger=Logger("test"))
    await pool.load()
    await pool.init()
    return pool, sys.modules["gated"]  # the handler's module, loaded by the pool


def answer(result: object) -> dict[str, str]:
    assert isinstance(result, RawResponse) and result.status == 200, result
    doc: dict[str, str] = json.loads(result.body)
    return doc


async def until(condition: object, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.fixture(autouse=True)
def _fresh_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "gated", raising=False)


def test_threads_take_the_waiting_events_themselves(
        tmp_path: Path) -> None:
    async def main() -> None:
        pool, handler = await thread_pool(tmp_path, 2)
        tasks = [asyncio.ensure_future(pool.submit(event(str(i)))) for i in range(8)]
        await until(lambda: pool.waiting == 6)
        assert pool.busy_workers == 2
        handler.gate.set()
        # The event loop is blocked here, so it hands nothing over: the two threads take
        # the six waiting events themselves, as each finishes.
        deadline = time.monotonic() + 5
        while len(handler.finished) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sorted(handler.finished) == [str(i) for i in range(8)]
        answers = [answer(r) for r in await asyncio.gather(*tasks)]
        assert [a["body"] for a in answers] == [str(i) for i in range(8)]
        assert {a["thread"] for a in answers} == {"t-worker-0", "t-worker-1"}
        stats = pool.stats
        assert stats.allocation_immediate == 2 and stats.allocation_after_wait == 6
        assert stats.handled_success == 8 and pool.waiting == 0 and pool.busy_workers == 0
        assert sum(t.count for t in pool.worker_timings.values()) == 8
        await pool.stop(2)
    asyncio.run(main())


def test_availability_timeout_refuses_a_waiting_event(tmp_path: Path) -> None:
    async def main() -> None:
        pool, handler = await thread_pool(tmp_path, 1, availability=0.2)
        running = asyncio.ensure_future(pool.submit(event("a")))
        await until(lambda: pool.busy_workers == 1)
        with pytest.raises(WorkerUnavailable, match=r"within 0\.2s"):
            await pool.submit(event("b"))
        assert pool.waiting == 0 and pool.stats.allocation_timeout == 1
        handler.gate.set()
        assert answer(await running)["body"] == "a"
        assert answer(await pool.submit(event("c")))["body"] == "c"  # the worker is free
        await pool.stop(2)
    asyncio.run(main())


def test_event_taken_from_the_line_times_out_and_the_next_runs_on_the_replacement(
        tmp_path: Path) -> None:
    async def main() -> None:
        pool, handler = await thread_pool(tmp_path, 1, event_timeout=0.5)
        first = asyncio.ensure_future(pool.submit(event("first")))
        await until(lambda: pool.busy_workers == 1)
        hung = asyncio.ensure_future(pool.submit(event("hang")))
        after = asyncio.ensure_future(pool.submit(event("after")))
        await until(lambda: pool.waiting == 2)
        handler.gate.set()  # "first" ends; its thread takes "hang", which overruns its timeout
        assert answer(await first)["body"] == "first"
        timed_out = await hung
        assert isinstance(timed_out, RawResponse) and timed_out.status == 408
        assert answer(await after)["body"] == "after"
        assert pool.stats.event_timeouts == 1 and pool.stats.worker_restarts == 1
        await pool.stop(2)
    asyncio.run(main())


def test_stopping_refuses_the_waiting_events(tmp_path: Path) -> None:
    async def main() -> None:
        pool, handler = await thread_pool(tmp_path, 1)
        running = asyncio.ensure_future(pool.submit(event("a")))
        waiting = asyncio.ensure_future(pool.submit(event("b")))
        await until(lambda: pool.waiting == 1)
        stopping = asyncio.ensure_future(pool.stop(2))
        with pytest.raises(WorkerUnavailable, match="shutting down"):
            await waiting
        handler.gate.set()
        assert answer(await running)["body"] == "a"
        await stopping
    asyncio.run(main())


def test_one_worker_serves_the_line_first_come_first_served(tmp_path: Path) -> None:
    async def main() -> None:
        pool, handler = await thread_pool(tmp_path, 1)
        tasks = [asyncio.ensure_future(pool.submit(event(str(i)))) for i in range(5)]
        await until(lambda: pool.waiting == 4)
        handler.gate.set()
        await asyncio.gather(*tasks)
        assert handler.finished == [str(i) for i in range(5)]
        await pool.stop(2)
    asyncio.run(main())


# The same allocation on process workers: the gate is a file (the handler runs in another
# process), and each finished event's body is appended to another.
PROCESS_HANDLER = """
import os, time

def handler(context, event):
    body = event.body.decode()
    here = os.path.dirname(os.path.abspath(__file__))
    if body == "hang":
        time.sleep(3)
    while not os.path.exists(os.path.join(here, "open")):
        time.sleep(0.005)
    with open(os.path.join(here, "finished"), "a") as out:
        out.write(body + "\\n")
    return body
"""


async def process_pool(tmp_path: Path, size: int, *, availability: float = 5.0,
                       event_timeout: float | None = None) -> WorkerPool:
    (tmp_path / "filegate.py").write_text(PROCESS_HANDLER)
    settings = FunctionSettings("filegate:handler", str(tmp_path), "f", "default", "http",
                                "t", 40, "text")
    pool = build_pool("process", settings, size, availability_timeout=availability,
                      event_timeout=event_timeout, max_waiting=100, logger=Logger("test"))
    await pool.load()
    await pool.init()
    return pool


def finished(tmp_path: Path) -> list[str]:
    path = tmp_path / "finished"
    return path.read_text().split() if path.exists() else []


def test_process_workers_are_sent_the_waiting_events_in_arrival_order(
        tmp_path: Path) -> None:
    async def main() -> None:
        pool = await process_pool(tmp_path, 1)
        tasks = [asyncio.ensure_future(pool.submit(event(str(i)))) for i in range(5)]
        await until(lambda: pool.waiting == 4)
        (tmp_path / "open").touch()
        results = await asyncio.gather(*tasks)
        assert [r.body for r in results if isinstance(r, RawResponse)] == \
            [str(i).encode() for i in range(5)]
        assert finished(tmp_path) == [str(i) for i in range(5)]
        stats = pool.stats
        assert stats.allocation_immediate == 1 and stats.allocation_after_wait == 4
        assert pool.waiting == 0 and pool.busy_workers == 0
        await pool.stop(2)
    asyncio.run(main())


def test_process_worker_lost_on_a_taken_event_costs_that_event_only(tmp_path: Path) -> None:
    async def main() -> None:
        pool = await process_pool(tmp_path, 1, event_timeout=1.0)
        first = asyncio.ensure_future(pool.submit(event("first")))
        await until(lambda: pool.busy_workers == 1)
        hung = asyncio.ensure_future(pool.submit(event("hang")))
        after = asyncio.ensure_future(pool.submit(event("after")))
        await until(lambda: pool.waiting == 2)
        (tmp_path / "open").touch()  # "first" ends; the worker is sent "hang" at once
        assert (await first).body == b"first"  # type: ignore[union-attr]
        timed_out = await hung
        assert isinstance(timed_out, RawResponse) and timed_out.status == 408
        assert (await after).body == b"after"  # type: ignore[union-attr]
        assert pool.stats.event_timeouts == 1 and pool.stats.worker_restarts == 1
        await pool.stop(2)
    asyncio.run(main())


def test_one_timer_refuses_each_entry_at_its_deadline_past_a_rerun_at_the_head() -> None:
    """The line's single timer: entries expire at their own deadlines, in order, even
    behind a rerun at the head whose deadline is later; a taken entry is not refused."""
    async def main() -> None:
        loop = asyncio.get_running_loop()
        line = WaitingLine()
        refused: list[tuple[str, float]] = []
        started = time.monotonic()
        line.attach(loop, lambda worker, entry: None,
                    lambda entry: refused.append((entry.payload, time.monotonic() - started)))
        for name, wait in (("a", 0.1), ("b", 0.2), ("c", 0.3)):
            line.put(LineEntry(name, loop.create_future(), None, wait))
        line.put(LineEntry("rerun", loop.create_future(), None, 0.6, rerun=True))
        taken = line.take("worker")
        assert taken is not None and taken.payload == "rerun"  # reruns go first
        line.put(LineEntry("rerun2", loop.create_future(), None, 0.6, rerun=True))
        await asyncio.sleep(0.45)
        assert [name for name, _ in refused] == ["a", "b", "c"]
        for (_, at), due in zip(refused, (0.1, 0.2, 0.3), strict=True):
            assert due - 0.01 <= at < due + 0.1, refused
        assert len(line) == 1  # the rerun waits on, its own deadline later
        await asyncio.sleep(0.25)
        assert [name for name, _ in refused][-1] == "rerun2" and len(line) == 0
        assert line._timer is None  # nobody waits: no timer
        line.put(LineEntry("d", loop.create_future(), None, 5.0))
        assert line.take_all()[0].payload == "d" and line._timer is None
    asyncio.run(main())
