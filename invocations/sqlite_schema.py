"""The SQLite backend's table: one row per call, request and response inline.

Partial indexes keep the hot queries (next due call of a function, next due
callback, dead letters, expired results) cheap however many calls are stored.
"""

from __future__ import annotations

import json
from typing import Any

from invocations.store import Call

DB_NAME = "calls.sqlite3"
COLUMNS = ("id, function, state, digest, request, body, accepted_ns, attempts, max_attempts, "
            "cancel, started_at, finished_at, due_at, status, duration, response, resp_body, "
            "cb_state, cb_attempts, cb_last, cb_due")
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS calls ({COLUMNS.replace("id,", "id TEXT PRIMARY KEY,", 1)});
CREATE INDEX IF NOT EXISTS calls_pending ON calls(function, due_at)
    WHERE state IN ('queued', 'retrying');
CREATE INDEX IF NOT EXISTS calls_callbacks ON calls(cb_due) WHERE cb_state = 'pending';
CREATE INDEX IF NOT EXISTS calls_finished ON calls(finished_at)
    WHERE state IN ('succeeded', 'failed', 'cancelled');
CREATE INDEX IF NOT EXISTS calls_dead ON calls(function, finished_at) WHERE state = 'dead';
"""
FINAL_SQL = "('succeeded', 'failed', 'dead', 'cancelled')"


def row_to_call(row: tuple[Any, ...]) -> Call:
    (cid, function, state, digest, request, body, accepted_ns, attempts, max_attempts, cancel,
     started_at, finished_at, due_at, status, duration, response, resp_body, cb_state,
     cb_attempts, cb_last, cb_due) = row
    req = json.loads(request)
    resp = json.loads(response) if response else {}
    return Call(id=cid, function=function, method=req["method"], path=req["path"],
                query=req["query"], headers=req["headers"], body=body,
                content_type=req["content_type"], callback_url=req["callback_url"],
                accepted_ns=accepted_ns, digest=digest, state=state, attempts=attempts,
                max_attempts=max_attempts, cancel_requested=bool(cancel),
                started_at=started_at, finished_at=finished_at, due_at=due_at, status=status,
                duration=duration, resp_headers=resp.get("headers", {}), resp_body=resp_body,
                resp_content_type=resp.get("content_type"),
                resp_dropped=bool(resp.get("dropped")), callback_state=cb_state,
                callback_attempts=cb_attempts, callback_last_status=cb_last,
                callback_due_at=cb_due)
