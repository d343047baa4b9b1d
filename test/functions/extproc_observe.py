"""A slow observer: records each event it sees (a JSON line in $OBSERVE_LOG) after
sleeping, so a test can tell whether Envoy waited for it."""

import asyncio
import json
import os


async def handler(context, event):
    await asyncio.sleep(float(os.environ.get("OBSERVE_DELAY", "0.3")))
    line = json.dumps({"phase": event.headers.get("processing-phase"), "path": event.path,
                       "method": event.method, "size": event.size,
                       "status": event.fields.get("upstream_status")})
    with open(os.environ["OBSERVE_LOG"], "a", encoding="utf-8") as log:
        log.write(line + "\n")
    return "ignored: observers cannot change traffic"
