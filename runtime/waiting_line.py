"""Events waiting for a thread or process worker, in one line every worker serves.

Nuclio's allocation: an event that finds no free worker waits, first come first
served, for the first worker to finish, at most the availability timeout. The pool
keeps those events here, behind a lock: a worker thread that finishes an event
takes the next one itself, at once, and a process worker is sent it from the
callback that read its answer. Without the line the worker would tell the event
loop it is free and sit idle until the loop, busy parsing other requests, handed
it the next event: a pass of the loop per event.

The loop still serves the line when a worker becomes free on its side (a thread
that found the line empty, a replacement), and refuses the entries whose
availability timeout ran out, with one timer for the whole line. Taking and
withdrawing are exclusive (one lock), so an entry either runs once or is refused
once.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol


class LineEntry:
    """One waiting event. ``future`` (on the loop) gets the event's result; ``worker``
    and ``started`` are set by whoever takes the entry, thread or loop."""

    __slots__ = ("deadline", "enqueued", "future", "payload", "rerun", "started", "timeout",
                 "wait", "worker")

    def __init__(self, payload: Any, future: asyncio.Future[Any], timeout: float | None,
                 wait: float, *, rerun: bool = False) -> None:
        self.payload = payload
        self.future = future
        self.timeout = timeout  # the event timeout, counted once a worker starts it
        self.enqueued = time.monotonic()
        self.wait = wait  # the availability timeout: refused if still waiting by then
        self.deadline = self.enqueued + wait
        self.rerun = rerun  # goes to the head of the line, out of deadline order
        self.worker: Any = None
        self.started = 0.0  # time.perf_counter() when taken


class LineWorker(Protocol):
    """A worker the loop can hand an entry without awaiting (thread and process kinds)."""

    worker_id: str

    def start_entry(self, entry: LineEntry) -> None: ...


class WaitingLine:
    def __init__(self) -> None:
        self._entries: collections.deque[LineEntry] = collections.deque()
        self._lock = threading.Lock()
        # Set by the pool that owns the line (``attach``): called on the loop when a worker
        # took an entry as it finished (the pool counts it and keeps the worker busy), and
        # when an entry's availability timeout ran out (the pool refuses it).
        self.taken: Callable[[Any, LineEntry], None] = lambda worker, entry: None
        self._expired: Callable[[LineEntry], None] = lambda entry: None
        self._loop: asyncio.AbstractEventLoop | None = None
        # One timer for the whole line, at its earliest deadline: cheaper than a timer
        # armed and cancelled per waiting event, as most wait far less than the timeout.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def attach(self, loop: asyncio.AbstractEventLoop, taken: Callable[[Any, LineEntry], None],
               expired: Callable[[LineEntry], None]) -> None:
        self._loop, self.taken, self._expired = loop, taken, expired

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, entry: LineEntry) -> None:
        """On the loop. A rerun (an event whose worker died before it began) goes to the
        head of the line, as it was accepted before the others; the rest queue in arrival
        order, so past the reruns, deadlines rise from the head to the tail."""
        with self._lock:
            if entry.rerun:
                self._entries.appendleft(entry)
            else:
                self._entries.append(entry)
        if self._timer is None or entry.deadline < self._timer_at:
            self._arm(entry.deadline)

    def _arm(self, deadline: float) -> None:
        assert self._loop is not None, "attach the line to its pool first"
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._loop.call_later(max(0.0, deadline - time.monotonic()), self._sweep)

    def _sweep(self) -> None:
        """Withdraws the entries whose deadline is past (under the lock, so an entry a
        worker took meanwhile is not refused) and hands them to the pool. Only the head
        is looked at: past the reruns there, deadlines rise."""
        self._timer = None
        now = time.monotonic()
        expired: list[LineEntry] = []
        reruns: list[LineEntry] = []
        with self._lock:
            entries = self._entries
            while entries and entries[0].rerun:
                rerun = entries.popleft()
                (expired if rerun.deadline <= now else reruns).append(rerun)
            while entries and entries[0].deadline <= now:
                expired.append(entries.popleft())
            deadlines = [entry.deadline for entry in reruns]
            if entries:
                deadlines.append(entries[0].deadline)
            entries.extendleft(reversed(reruns))
        for entry in expired:
            self._expired(entry)
        if deadlines:
            self._arm(min(deadlines))

    def take(self, worker: Any) -> LineEntry | None:
        """The oldest entry, now ``worker``'s; None when nobody waits."""
        if not self._entries:  # a racy peek: the loop serves what a thread misses
            return None
        with self._lock:
            if not self._entries:
                return None
            entry = self._entries.popleft()
        entry.worker = worker
        entry.started = time.perf_counter()
        return entry

    def take_all(self) -> list[LineEntry]:
        """Empties the line (the pool is stopping): the entries, for the pool to refuse."""
        with self._lock:
            entries = list(self._entries)
            self._entries.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        return entries

    def withdraw(self, entry: LineEntry) -> bool:
        """Removes a still-waiting entry; False when a worker took it already."""
        with self._lock:
            try:
                self._entries.remove(entry)
            except ValueError:
                return False
            return True
