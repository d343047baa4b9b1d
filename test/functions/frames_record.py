"""MJPEG trigger test handlers: each frame is described (and appended, one JSON line, to
the file named by FRAMES_OUT), and the description goes to the sink as JSON.

FRAMES_DELAY (seconds) slows every frame; FRAMES_SHUFFLE=1 makes the delay vary with
frame_num so that, with several workers, frames finish out of order. FRAMES_FAIL_EVERY=N
raises on every Nth processed frame, FRAMES_EMPTY_EVERY=N returns None on them.
"""

import asyncio
import hashlib
import json
import os
import time

OUT = os.environ.get("FRAMES_OUT")
DELAY = float(os.environ.get("FRAMES_DELAY", "0"))
SHUFFLE = os.environ.get("FRAMES_SHUFFLE") == "1"
FAIL_EVERY = int(os.environ.get("FRAMES_FAIL_EVERY", "0"))
EMPTY_EVERY = int(os.environ.get("FRAMES_EMPTY_EVERY", "0"))

_seen = 0


async def handler(context, event):
    global _seen
    _seen += 1
    num = event.fields["frame_num"]
    delay = DELAY * (((num * 7) % 5) / 4) if SHUFFLE else DELAY
    if delay:
        await asyncio.sleep(delay)
    record = {"frame_num": num, "timestamp": event.fields["timestamp"],
              "url": event.fields["url"], "content_type": event.content_type,
              "size": len(event.body), "md5": hashlib.md5(event.body).hexdigest(),
              "soi": event.body[:2].hex(), "done_at": time.time()}
    if OUT:
        with open(OUT, "a") as out:
            out.write(json.dumps(record) + "\n")
    if FAIL_EVERY and _seen % FAIL_EVERY == 0:
        raise RuntimeError("a frame that fails on purpose")
    if EMPTY_EVERY and _seen % EMPTY_EVERY == 0:
        return None
    return record
