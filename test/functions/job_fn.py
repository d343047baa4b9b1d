"""A job function whose outcome the event's path chooses."""

import time


def handler(context, event):
    kind = event.path.strip("/")
    if kind == "ok":
        return {"got": event.body, "method": event.method, "fields": event.fields,
                "header": event.get_header("x-job"), "content_type": event.content_type,
                "timestamp": event.timestamp.isoformat()}
    if kind == "created":
        return 201, "made"
    if kind == "raise":
        raise RuntimeError("job exploded")
    if kind == "bad":
        return 400, "bad input"
    if kind == "slow":
        time.sleep(10)
        return "late"
    return "?"
