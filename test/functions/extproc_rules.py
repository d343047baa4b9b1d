"""An ext_proc handler whose behaviour the request path picks; it reports what it saw
in headers (``x-seen-request`` upstream, ``x-seen-response`` to the client)."""

import asyncio
import json

import nuclio_sdk

IMMEDIATE = {"x-nuclio-immediate-response": "true"}


def _seen(event):
    body = event.body
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    elif isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return json.dumps({
        "phase": event.headers.get("processing-phase"),
        "method": event.method, "path": event.path, "fields": event.fields,
        "content_type": event.content_type, "body": body[:200], "size": event.size,
        "content_encoding": event.headers.get("content-encoding"),
        "has_pseudo": any(k.startswith(":") for k in event.headers),
        "host": event.headers.get("host"), "trigger": event.trigger.kind,
    })


async def handler(context, event):
    phase = event.headers.get("processing-phase")
    path = event.path
    if phase in ("1", "2"):
        if path == "/slow":  # beyond Envoy's message_timeout
            await asyncio.sleep(1.5)
        return _request(event, path)
    return _response(event, path)


def _request(event, path):
    seen = {"x-seen-request": _seen(event)}
    if path == "/add-header":
        return nuclio_sdk.Response(headers={**seen, "X-Added": "by-the-function"})
    if path == "/remove-header":
        return nuclio_sdk.Response(headers={**seen, "x-nuclio-remove-headers": "x-remove-me"})
    if path == "/rewrite":
        return nuclio_sdk.Response(body="a new body, longer than the one the client sent",
                                   headers=seen, content_type="text/plain", status_code=200)
    if path == "/echo-body":  # shows how many calls a streamed body took
        body = event.body if isinstance(event.body, bytes) else json.dumps(event.body).encode()
        return nuclio_sdk.Response(body=b"[handler saw: " + body + b"]", headers=seen,
                                   content_type="text/plain", status_code=200)
    if path == "/deny":
        return nuclio_sdk.Response(body={"denied": True}, content_type="application/json",
                                   headers={"x-denied-by": "function"}, status_code=403)
    if path == "/allow":
        return nuclio_sdk.Response(body="answered by the function", headers=IMMEDIATE,
                                   content_type="text/plain", status_code=200)
    if path == "/raise":
        raise RuntimeError("a secret detail that must not leak")
    return nuclio_sdk.Response(headers=seen)


def _response(event, path):
    seen = {"x-seen-response": _seen(event)}
    if path == "/response-rewrite":
        return nuclio_sdk.Response(body={"rewritten": True, "upstream": event.fields.get(
            "upstream_status")}, content_type="application/json", headers=seen,
            status_code=202)
    if path == "/response-raise":
        raise RuntimeError("a secret detail that must not leak")
    return nuclio_sdk.Response(headers=seen)
