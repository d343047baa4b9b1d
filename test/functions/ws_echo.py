"""WebSocket test handlers: echo (frame type follows the content type), event
inspection, errors, empty replies and a slow variant for back-pressure."""

import asyncio
import time


def _reply(context, event):
    body = event.body
    if body == b"inspect":
        return {
            "body": body.decode(), "content_type": event.content_type, "fields": event.fields,
            "method": event.method, "path": event.path, "url": event.url,
            "header_x_test": event.get_header("X-Test"),
            "header_keys_are_str": all(type(k) is str for k in event.headers),
            "trigger_kind": event.trigger.kind, "trigger_name": event.trigger.name,
            "id": event.id,
        }
    if body == b"raise":
        raise ValueError("boom")
    if body == b"empty":
        return None
    # str -> text frame, bytes -> binary frame (a Response saying text/plain about bytes is
    # taken as "no content type given" by the runtime, so return str for text).
    return body.decode() if event.content_type == "text/plain" else body


def handler(context, event):
    return _reply(context, event)


async def handler_async(context, event):
    return _reply(context, event)


def jittery(context, event):
    """Echo after a short, message-dependent sleep, so workers finish out of order."""
    time.sleep((hash(event.body) % 5) / 1000.0)
    return _reply(context, event)


async def slow(context, event):
    await asyncio.sleep(float(event.get_header("X-Delay") or 0.2))
    return _reply(context, event)
