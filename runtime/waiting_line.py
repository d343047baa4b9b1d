"""Events waiting for a thread worker, in one line that every worker thread serves.

Nuclio's allocation: an event that finds no free worker waits, first come first
served, for the first worker to finish, at most the availability timeout. For
thread workers the pool keeps those events here, behind a lock, and the thread
that finishes an event takes the next one itself, at once. Without the line the
thread would tell the event loop it is free and sit idle until the loop, busy
parsing other requests, handed it the next event: a pass of the loop per event.

The loop still serves the line when a worker becomes free on its side (a thread
that found the line empty, a replacement), and withdraws an entry whose
availability timeout ran out. Taking and withdrawing are exclusive (one lock), so
an entry either runs once or is refused once.
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

    __slots__ = ("enqueued", "future", "payload", "started", "timeout", "timer", "worker")

    def __init__(self, payload: Any, future: asyncio.Future[Any], timeout: float | None
                 ) -> None:
        self.payload = payload
        self.future = future
        self.timeout = timeout  # the event timeout, counted once a worker starts it
        self.enqueued = time.monotonic()
        self.worker: Any = None
        self.started = 0.0  # time.perf_counter() when taken
        self.timer: asyncio.TimerHandle | None = None  # the availability timeout


class LineWorker(Protocol):
    """A worker the loop can hand an entry without awaiting (thread and process kinds)."""

    worker_id: str

    def start_entry(self, entry: LineEntry) -> None: ...


class WaitingLine:
    def __init__(self) -> None:
        self._entries: collections.deque[LineEntry] = collections.deque()
        self._lock = threading.Lock()
        # Set by the pool that owns the line: called on the loop when a worker took an
        # entry as it finished (the pool counts it and keeps the worker busy).
        self.taken: Callable[[Any, LineEntry], None] = lambda worker, entry: None

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, entry: LineEntry, *, first: bool = False) -> None:
        """``first``: an event that must run again (its worker died before it began)
        goes to the head of the line, as it was accepted before the others."""
        with self._lock:
            if first:
                self._entries.appendleft(entry)
            else:
                self._entries.append(entry)

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
        return entries

    def withdraw(self, entry: LineEntry) -> bool:
        """Removes a still-waiting entry; False when a worker took it already."""
        with self._lock:
            try:
                self._entries.remove(entry)
            except ValueError:
                return False
            return True
