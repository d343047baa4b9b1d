"""Group commit: one thread, one SQLite connection, one transaction per batch.

Callers on the event loop queue small operations (functions of the connection);
the thread takes everything queued at once, runs it in one ``BEGIN IMMEDIATE``
... ``COMMIT`` (with ``synchronous=FULL`` that is one fsync of the WAL for the
whole batch), and only then resolves the callers' futures. While a commit is
being synced, new operations pile up and ride in the next batch, so under load
durability costs one fsync per batch instead of one per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from invocations.store import StoreUnavailable

Op = Callable[[sqlite3.Connection], Any]
_Result = tuple[asyncio.Future[Any], Any, BaseException | None]
MAX_BATCH = 2048


class GroupCommitter:
    def __init__(self, conn: sqlite3.Connection, on_rollback: Callable[[sqlite3.Connection],
                                                                       None]) -> None:
        self._conn = conn
        self._on_rollback = on_rollback  # e.g. recount in-memory state the batch changed
        self._queue: queue.SimpleQueue[tuple[Op, asyncio.Future[Any]] | None] = \
            queue.SimpleQueue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="async-sqlite", daemon=True)
        self._closed = False
        self.error: str | None = None  # the last commit's failure, until one succeeds
        self.batches = 0
        self.ops = 0
        self._thread.start()

    async def run(self, op: Op) -> Any:
        """Runs ``op`` in the next batch; returns once that batch is committed."""
        if self._closed:
            raise StoreUnavailable("the async store is closed")
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put((op, fut))
        return await fut

    async def close(self, timeout: float = 10.0) -> None:
        """Commits what is queued, then stops the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join, timeout)

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is None:
                break
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            results = self._commit(batch)
            self.batches += 1
            self.ops += len(batch)
            loop = self._loop
            if loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):  # loop closed meanwhile
                    loop.call_soon_threadsafe(_deliver, results)

    def _commit(self, batch: list[tuple[Op, asyncio.Future[Any]]]) -> list[_Result]:
        conn = self._conn
        results: list[_Result] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op, fut in batch:
                try:
                    results.append((fut, op(conn), None))
                except sqlite3.OperationalError:  # disk full, I/O error: the batch fails
                    raise
                except Exception as exc:  # one op's fault must not fail its batch-mates
                    results.append((fut, None, exc))
            conn.execute("COMMIT")
            self.error = None
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self.error = f"sqlite: {exc}"
            self._on_rollback(conn)
            failure = StoreUnavailable(self.error)
            results = [(fut, None, failure) for _, fut in batch]
        return results


def _deliver(results: list[_Result]) -> None:
    for fut, value, exc in results:
        if fut.done():
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)
