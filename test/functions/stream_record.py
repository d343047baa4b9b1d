"""Stream-trigger test handler: records each message it handled, one JSON line each.

Bodies are ``<id>`` or ``<command>:<arg>:<id>``:
- ``crash:0:<id>``: the worker process dies (``os._exit``) the first time it sees
  ``<id>`` (a marker file remembers), then handles it normally;
- ``slow:<seconds>:<id>``: sleeps first;
- ``fail:<n>:<id>``: answers 500 the first ``n`` times.
The record is written (O_APPEND, one write) *before* the handler returns, so a
record exists for every message the trigger could have acknowledged.
"""

import json
import os
import time

LOG = os.environ.get("STREAM_LOG", "/tmp/stream.log")
MARKS = os.environ.get("STREAM_MARKS", "/tmp/stream-marks")


def _seen(key):
    """Counts how often ``key`` came by (a file per key: survives worker crashes)."""
    os.makedirs(MARKS, exist_ok=True)
    path = os.path.join(MARKS, key.replace("/", "_"))
    with open(path, "a") as handle:
        handle.write("x")
    return os.path.getsize(path)


def handler(context, event):
    body = event.body.decode() if isinstance(event.body, bytes) else str(event.body)
    command, _, rest = body.partition(":")
    if command == "crash":
        if _seen("crash-" + rest) == 1:
            os._exit(3)
    elif command == "slow":
        seconds, _, _ = rest.partition(":")
        time.sleep(float(seconds))
    elif command == "fail":
        times, _, ident = rest.partition(":")
        if _seen("fail-" + ident) <= int(times):
            return context.Response(body="failing on purpose", status_code=500)
    record = {"body": body, "topic": event.topic, "path": event.path,
              "fields": event.fields, "headers": dict(event.headers or {}),
              "pid": os.getpid(), "trigger": event.trigger.kind}
    line = (json.dumps(record) + "\n").encode()
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
    return "handled:" + body
