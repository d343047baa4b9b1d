"""The embedded queue: SQLite in WAL mode with ``synchronous=FULL``, group-committed.

Every operation is a small function of the connection run by the
``GroupCommitter``'s thread, so a 202 is only sent after the commit that holds
its call returned, and concurrent accepts share one fsync. The file is locked to
one processor (``flock``); several replicas need the JetStream backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import sqlite3
from typing import Any

from invocations.config import Retention
from invocations.group_commit import GroupCommitter, Op
from invocations.sqlite_schema import COLUMNS, DB_NAME, FINAL_SQL, SCHEMA, row_to_call
from invocations.store import (
    FINAL_STATES,
    Accepted,
    Call,
    CallbackState,
    Outcome,
    State,
    StoreUnavailable,
    now,
)
from runtime.logger import Logger


class SqliteStore:
    """``CallStore`` on one SQLite file in ``directory`` (locked to one processor)."""

    backend = "sqlite"

    def __init__(self, directory: str, retention: Retention, logger: Logger) -> None:
        self.directory = directory
        self.retention = retention
        self._logger = logger
        self._depth: dict[str, int] = {}  # calls not final, per function (writer thread)
        self._conn: sqlite3.Connection | None = None
        self._writer: GroupCommitter | None = None
        self._lock_fd: int | None = None
        self._closed = False
        self._purger: asyncio.Task[None] | None = None
        self.recovered = 0

    # -- life cycle ------------------------------------------------------------------
    def open(self) -> None:
        """Creates the directory and the database, takes the lock, and puts calls that
        were running when the last process died back in the queue. Raises OSError or
        sqlite3.Error (the trigger turns them into a ConfigError naming the path)."""
        os.makedirs(self.directory, exist_ok=True)
        fd = os.open(os.path.join(self.directory, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise OSError(f"{self.directory} is in use by another processor (the sqlite "
                          f"backend serves one processor; use backend: nats for replicas)"
                          ) from None
        self._lock_fd = fd
        conn = sqlite3.connect(os.path.join(self.directory, DB_NAME), isolation_level=None,
                               check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        conn.executescript(SCHEMA)
        conn.execute("BEGIN IMMEDIATE")
        t = now()
        # A call that was running when the processor died runs again (at-least-once);
        # one that had used its last attempt is dead, one being cancelled is cancelled.
        self.recovered = conn.execute(
            "UPDATE calls SET state = CASE WHEN cancel THEN 'cancelled' "
            "WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, due_at = ?, "
            "finished_at = CASE WHEN cancel OR attempts >= max_attempts THEN ? END, "
            "cb_state = CASE WHEN NOT cancel AND attempts >= max_attempts AND "
            "json_extract(request, '$.callback_url') IS NOT NULL THEN 'pending' "
            "ELSE cb_state END, status = CASE WHEN NOT cancel AND attempts >= max_attempts "
            "THEN 503 ELSE status END WHERE state = 'running'", (t, t)).rowcount
        # Callbacks the last process was sending (held back while in flight) are due now.
        conn.execute("UPDATE calls SET cb_due = ? WHERE cb_state = 'pending' AND cb_due > ?",
                     (t, t))
        for function, count in conn.execute(
                f"SELECT function, COUNT(*) FROM calls WHERE state NOT IN {FINAL_SQL} "
                "GROUP BY function"):
            self._depth[function] = count
        conn.execute("COMMIT")
        self._conn = conn
        self._writer = GroupCommitter(conn, self._recount)

    @property
    def available(self) -> bool:
        return self._writer is not None and not self._closed and self._writer.error is None

    def status(self) -> dict[str, Any]:
        state = "ok" if self.available else "unavailable"
        out: dict[str, Any] = {"backend": self.backend, "state": state,
                               "directory": self.directory, "queued": sum(self._depth.values())}
        if self._writer is not None and self._writer.error:
            out["reason"] = self._writer.error
        return out

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._purger = asyncio.create_task(self._purge_forever())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        if self._writer is not None:
            await self._writer.close()
        if self._conn is not None:
            self._conn.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)

    async def _do(self, op: Op) -> Any:
        if self._writer is None:
            raise StoreUnavailable("the async store is not open")
        return await self._writer.run(op)

    def _recount(self, conn: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._depth = dict(conn.execute(
                f"SELECT function, COUNT(*) FROM calls WHERE state NOT IN {FINAL_SQL} "
                "GROUP BY function").fetchall())

    def _bump(self, function: str, delta: int) -> None:
        self._depth[function] = self._depth.get(function, 0) + delta

    # -- CallStore -------------------------------------------------------------------
    async def accept(self, call: Call, max_queued: int) -> tuple[Accepted, Call]:
        request = json.dumps({"method": call.method, "path": call.path, "query": call.query,
                              "headers": call.headers, "content_type": call.content_type,
                              "callback_url": call.callback_url}, separators=(",", ":"))

        def op(conn: sqlite3.Connection) -> tuple[Accepted, Call]:
            known = _select(conn, call.id)
            if known is not None:
                return ("duplicate" if known.digest == call.digest else "conflict"), known
            if self._depth.get(call.function, 0) >= max_queued:
                return "full", call
            conn.execute(
                f"INSERT INTO calls ({COLUMNS}) VALUES "
                "(?, ?, 'queued', ?, ?, ?, ?, 0, ?, 0, NULL, NULL, ?, NULL, NULL, NULL, NULL, "
                "'none', 0, NULL, 0)",
                (call.id, call.function, call.digest, request, call.body, call.accepted_ns,
                 call.max_attempts, call.due_at))
            self._bump(call.function, 1)
            return "new", call

        result: tuple[Accepted, Call] = await self._do(op)
        return result

    async def claim(self, function: str, limit: int) -> tuple[list[Call], float | None]:
        def op(conn: sqlite3.Connection) -> tuple[list[Call], float | None]:
            t = now()
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM calls WHERE function = ? AND state IN "
                "('queued', 'retrying') AND due_at <= ? ORDER BY due_at LIMIT ?",
                (function, t, limit)).fetchall()
            calls = [row_to_call(r) for r in rows]
            for c in calls:
                c.state, c.attempts, c.started_at = "running", c.attempts + 1, t
            conn.executemany("UPDATE calls SET state = 'running', attempts = ?, "
                             "started_at = ? WHERE id = ?",
                             [(c.attempts, t, c.id) for c in calls])
            nxt = conn.execute("SELECT MIN(due_at) FROM calls WHERE function = ? AND state IN "
                               "('queued', 'retrying')", (function,)).fetchone()[0]
            return calls, (None if nxt is None else max(0.0, nxt - t))

        result: tuple[list[Call], float | None] = await self._do(op)
        return result

    async def heartbeat(self, call: Call) -> None:
        return None

    async def record(self, call: Call, outcome: Outcome, state: State, due_in: float) -> None:
        dropped = len(outcome.body) > self.retention.maxResultBytes
        response = json.dumps({"headers": outcome.headers, "content_type": outcome.content_type,
                               "dropped": dropped}, separators=(",", ":"))
        t = now()

        def op(conn: sqlite3.Connection) -> None:
            cancel = conn.execute("SELECT cancel FROM calls WHERE id = ?",
                                  (call.id,)).fetchone()
            new_state = state
            if state == "retrying" and cancel and cancel[0]:
                new_state = "cancelled"  # cancelled while running: no retry
            is_final = new_state in FINAL_STATES
            conn.execute(
                "UPDATE calls SET state = ?, status = ?, duration = ?, response = ?, "
                "resp_body = ?, due_at = ?, finished_at = ?, cb_state = ?, cb_due = ? "
                "WHERE id = ?",
                (new_state, outcome.status, outcome.duration, response,
                 None if dropped else outcome.body, t + due_in, t if is_final else None,
                 "pending" if is_final and new_state != "cancelled" and call.callback_url
                else "none", t, call.id))
            if is_final:
                self._bump(call.function, -1)
                if new_state == "dead":
                    self._trim_dead(conn, call.function)
            call.state = new_state

        await self._do(op)

    def _trim_dead(self, conn: sqlite3.Connection, function: str) -> None:
        """The dead-letter list is bounded per function: the oldest go first."""
        conn.execute("DELETE FROM calls WHERE id IN (SELECT id FROM calls WHERE function = ? "
                     "AND state = 'dead' AND cb_state != 'pending' ORDER BY finished_at DESC "
                     "LIMIT -1 OFFSET ?)", (function, self.retention.maxDeadLetters))

    async def get(self, call_id: str) -> Call | None:
        def op(conn: sqlite3.Connection) -> Call | None:
            return _select(conn, call_id)

        result: Call | None = await self._do(op)
        return result

    async def cancel(self, call_id: str) -> Call | None:
        def op(conn: sqlite3.Connection) -> Call | None:
            call = _select(conn, call_id)
            if call is None:
                return None
            if call.state in ("queued", "retrying"):
                t = now()  # the client cancelled it: no callback
                conn.execute("UPDATE calls SET state = 'cancelled', finished_at = ?, "
                             "cancel = 1 WHERE id = ?", (t, call_id))
                self._bump(call.function, -1)
                call.state, call.finished_at = "cancelled", t
            elif call.state == "running":
                conn.execute("UPDATE calls SET cancel = 1 WHERE id = ?", (call_id,))
                call.cancel_requested = True
            return call

        result: Call | None = await self._do(op)
        return result

    async def dead_letters(self, function: str, limit: int) -> list[Call]:
        def op(conn: sqlite3.Connection) -> list[Call]:
            return [row_to_call(r) for r in conn.execute(
                f"SELECT {COLUMNS} FROM calls WHERE function = ? AND state = 'dead' "
                "ORDER BY finished_at LIMIT ?", (function, limit))]

        result: list[Call] = await self._do(op)
        return result

    async def requeue(self, call_id: str, max_attempts: int) -> Call | None:
        def op(conn: sqlite3.Connection) -> Call | None:
            call = _select(conn, call_id)
            if call is None:
                return None
            if call.state not in ("dead", "failed"):
                return call
            conn.execute("UPDATE calls SET state = 'queued', attempts = 0, max_attempts = ?, "
                         "due_at = ?, finished_at = NULL, cancel = 0, cb_state = 'none', "
                         "cb_attempts = 0, cb_last = NULL WHERE id = ?",
                         (max_attempts, now(), call_id))
            self._bump(call.function, 1)
            call.state, call.attempts = "queued", 0
            return call

        result: Call | None = await self._do(op)
        return result

    async def depth(self, function: str) -> int:
        return self._depth.get(function, 0)

    def cached_depth(self, function: str) -> int:
        """For the queue-depth gauge at scrape time (no trip to the writer thread)."""
        return self._depth.get(function, 0)

    async def callbacks_due(self, limit: int) -> tuple[list[Call], float | None]:
        def op(conn: sqlite3.Connection) -> tuple[list[Call], float | None]:
            t = now()
            rows = conn.execute(f"SELECT {COLUMNS} FROM calls WHERE cb_state = 'pending' "
                                "AND cb_due <= ? ORDER BY cb_due LIMIT ?",
                                (t, limit)).fetchall()
            # Not due again while this process is sending them (a restart resends).
            conn.executemany("UPDATE calls SET cb_due = ? WHERE id = ?",
                             [(t + 3600.0, r[0]) for r in rows])
            nxt = conn.execute("SELECT MIN(cb_due) FROM calls WHERE cb_state = 'pending' "
                               "AND cb_due > ?", (t,)).fetchone()[0]
            return [row_to_call(r) for r in rows], (None if nxt is None else nxt - t)

        result: tuple[list[Call], float | None] = await self._do(op)
        return result

    async def callback_result(self, call: Call, state: CallbackState, last_status: int | None,
                              due_in: float) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute("UPDATE calls SET cb_state = ?, cb_attempts = cb_attempts + 1, "
                         "cb_last = ?, cb_due = ? WHERE id = ?",
                         (state, last_status, now() + due_in, call.id))

        await self._do(op)

    # -- retention -------------------------------------------------------------------
    async def _purge_forever(self) -> None:
        while True:
            await asyncio.sleep(30.0)
            with contextlib.suppress(StoreUnavailable):
                await self.purge()

    async def purge(self) -> int:
        """Drops finished calls past ``retention.finished``, then the oldest finished ones
        while the stored bytes exceed ``retention.maxBytes`` (dead letters are kept to
        their own bound; calls whose callback is pending are never dropped)."""
        keep = self.retention

        def op(conn: sqlite3.Connection) -> int:
            gone = conn.execute("DELETE FROM calls WHERE state IN ('succeeded', 'failed', "
                                "'cancelled') AND cb_state != 'pending' AND finished_at < ?",
                                (now() - keep.finished,)).rowcount
            total = conn.execute("SELECT IFNULL(SUM(LENGTH(body) + IFNULL(LENGTH(resp_body), "
                                 "0)), 0) FROM calls").fetchone()[0]
            if total > keep.maxBytes:
                victims = []
                for cid, size in conn.execute(
                        "SELECT id, LENGTH(body) + IFNULL(LENGTH(resp_body), 0) FROM calls "
                        "WHERE state IN ('succeeded', 'failed', 'cancelled') AND "
                        "cb_state != 'pending' ORDER BY finished_at"):
                    if total <= keep.maxBytes:
                        break
                    victims.append((cid,))
                    total -= size
                conn.executemany("DELETE FROM calls WHERE id = ?", victims)
                gone += len(victims)
            return int(gone)

        result: int = await self._do(op)
        return result


def _select(conn: sqlite3.Connection, call_id: str) -> Call | None:
    row = conn.execute(f"SELECT {COLUMNS} FROM calls WHERE id = ?", (call_id,)).fetchone()
    return None if row is None else row_to_call(row)
