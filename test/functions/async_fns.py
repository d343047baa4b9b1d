"""Handlers for the async-invocation tests: slow, flaky, and fixable ones.

State that must outlive a worker (or the processor) lives in files named by env
vars, so that a test can count executions across kill -9 and restarts.
"""

import json
import os
import time


def _append(name, line):
    path = os.environ.get(name)
    if path:
        with open(path, "a") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def echo(context, event):
    """Reports what the handler saw, so tests can check event semantics."""
    _append("ASYNC_RUNS", event.id)
    delay = float(event.headers.get("X-Sleep", "0") or 0)
    if delay:
        time.sleep(delay)
    body = event.body if isinstance(event.body, bytes) else json.dumps(event.body).encode()
    return context.Response(
        body=json.dumps({"id": event.id, "path": event.path, "method": event.method,
                         "fields": dict(event.fields), "body": body.decode(errors="replace"),
                         "call_id": event.headers.get("X-Call-Id"),
                         "callback_url": event.headers.get("X-Callback-Url")}),
        headers={"X-Handler": "echo"}, content_type="application/json", status_code=200)


def slow(context, event):
    tag = os.environ.get("ASYNC_TAG")
    _append("ASYNC_RUNS", f"{event.id} {tag}" if tag else event.id)
    time.sleep(float(os.environ.get("ASYNC_SLEEP", "0.05")))
    return f"done {event.id}"


def flaky(context, event):
    """503 for the first FAIL_TIMES attempts of each call, then 200."""
    runs = _count(event.id)
    if runs <= int(os.environ.get("FAIL_TIMES", "2")):
        return context.Response(body="not yet", status_code=503, headers={"Retry-After": "0"})
    return f"ok after {runs}"


def fixable(context, event):
    """500 until the file named by FIXED_FLAG exists."""
    _count(event.id)
    if not os.path.exists(os.environ["FIXED_FLAG"]):
        return context.Response(body="broken", status_code=500)
    return "fixed"


def _count(call_id):
    _append("ASYNC_RUNS", call_id)
    path = os.environ["ASYNC_RUNS"]
    with open(path) as handle:
        return sum(1 for line in handle if line.strip() == call_id)
