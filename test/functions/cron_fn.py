"""Counts cron ticks in a file (one line per tick)."""

import os
import time


def handler(context, event):
    with open(os.environ["TICKS_FILE"], "a") as handle:
        handle.write(f"{event.trigger.kind} {event.method} {event.path} {event.body!r}\n")
    time.sleep(float(os.environ.get("TICK_SLEEP", "0")))
    return "tick"
