"""Handlers that fail in every way a handler can fail."""

import asyncio
import ctypes
import os
import signal
import time


def handler(context, event):
    kind = event.path.strip("/")
    if kind == "raise":
        raise ValueError("boom: secret detail")
    if kind == "exit":
        os._exit(1)
    if kind == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "segfault":
        ctypes.string_at(0)
    if kind == "sleep":
        time.sleep(float(event.fields.get("s", "1")))
        return "slept"
    if kind == "slowexit":  # dies while an event may wait behind it (pipelining)
        time.sleep(float(event.fields.get("s", "1")))
        os._exit(1)
    if kind == "sysexit":
        raise SystemExit(3)
    return {"ok": True, "pid": os.getpid(), "worker_id": context.worker_id}


async def handler_async(context, event):
    kind = event.path.strip("/")
    if kind == "sleep":
        await asyncio.sleep(float(event.fields.get("s", "1")))
        return "slept"
    if kind == "raise":
        raise ValueError("boom: secret detail")
    return {"ok": True, "pid": os.getpid()}
