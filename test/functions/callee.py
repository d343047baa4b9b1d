"""A function other functions call (tests of fusion's callers): the request path picks
what it answers, and ``/echo`` shows the event the call produced."""

import asyncio


async def handler(context, event):
    kind = event.path.strip("/")
    if kind == "text":
        return "plain text"
    if kind == "json":
        return {"a": 1, "list": [1, 2]}
    if kind == "binary":
        return context.Response(body=b"\x00\xffbin", content_type="application/x-bin",
                                headers={"X-Kind": "binary"}, status_code=200)
    if kind == "missing":
        return context.Response(body={"error": "no such thing"}, status_code=404)
    if kind == "raise":
        raise ValueError("callee failed")
    if kind == "slow":
        await asyncio.sleep(float(event.fields.get("s", "2")))
        return "slow"
    body = event.body
    return {"method": event.method, "path": event.path, "fields": dict(event.fields),
            "content_type": event.content_type,
            "body": body.decode(errors="replace") if isinstance(body, bytes) else body,
            "headers": {k.lower(): v for k, v in event.headers.items()}}
