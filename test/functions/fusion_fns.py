"""Functions for the fusion tests: callees of every answer kind, and callers.

A caller reads what to call from its request's JSON body:
``{"target": name, "body": ..., "path": ..., "method": ..., "timeout": s}`` and answers
with a JSON description of the ``nuclio_sdk.Response`` it got, so a test can compare the
local and the remote path field by field.
"""

from __future__ import annotations

import base64
import os
import time
from typing import Any

import nuclio_sdk


def _header(event: Any, name: str) -> Any:
    for key, value in (event.headers or {}).items():
        if key.lower() == name.lower():
            return value
    return None


def echo(context: Any, event: Any) -> Any:
    context.logger.info("echo handled an event")
    body = event.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    return {"method": event.method, "path": event.path, "fields": dict(event.fields or {}),
            "body": body, "content_type": event.content_type,
            "traceparent": _header(event, "traceparent"),
            "depth": _header(event, "X-Nuclio-Call-Depth"),
            "trigger": event.trigger.name, "function": os.environ.get("NUCLIO_FUNCTION_NAME"),
            "env": os.environ.get("FUSION_TEST_VAR")}


def text(context: Any, event: Any) -> Any:
    return "plain text answer"


def json_answer(context: Any, event: Any) -> Any:
    return {"answer": 42, "list": [1, 2]}


def binary(context: Any, event: Any) -> Any:
    return bytes(range(256))


def not_found(context: Any, event: Any) -> Any:
    return context.Response(body="no such thing", headers={"X-Reason": "missing"},
                            content_type="text/plain", status_code=404)


def raises(context: Any, event: Any) -> Any:
    raise ValueError("the callee failed")


def slow(context: Any, event: Any) -> Any:
    time.sleep(float((event.fields or {}).get("seconds", 2)))
    return "late"


async def async_echo(context: Any, event: Any) -> Any:
    return echo(context, event)


def _request(event: Any) -> dict[str, Any]:
    body = event.body
    return body if isinstance(body, dict) else {}


def _outgoing(request: dict[str, Any]) -> nuclio_sdk.Event:
    return nuclio_sdk.Event(body=request.get("body", ""), path=request.get("path", "/"),
                            method=request.get("method", "POST"),
                            content_type=request.get("content_type"),
                            headers=dict(request.get("headers") or {}))


def describe(response: Any) -> dict[str, Any]:
    body = response.body
    if isinstance(body, bytes):
        body = {"base64": base64.b64encode(body).decode()}
    return {"status": response.status_code, "headers": response.headers, "body": body,
            "content_type": response.content_type, "type": type(response).__name__}


def caller(context: Any, event: Any) -> Any:
    request = _request(event)
    context.logger.info("caller calling %s", request["target"])
    response = context.platform.call_function(request["target"], _outgoing(request),
                                              timeout=request.get("timeout"))
    return describe(response)


async def async_caller(context: Any, event: Any) -> Any:
    request = _request(event)
    context.logger.info("async caller calling %s", request["target"])
    response = await context.platform.call_function_async(
        request["target"], _outgoing(request), timeout=request.get("timeout"))
    return describe(response)


async def async_blocking_caller(context: Any, event: Any) -> Any:
    """The mistake: the blocking call from an async handler on the processor's loop."""
    request = _request(event)
    response = context.platform.call_function(request["target"], _outgoing(request))
    return describe(response)


def self_caller(context: Any, event: Any) -> Any:
    """Calls itself with its own event, forever: only the depth limit stops it. Its name
    is the request path (NUCLIO_FUNCTION_NAME is process-wide for thread workers)."""
    response = context.platform.call_function(event.path.strip("/"), event)
    return context.Response(body=response.body, status_code=response.status_code,
                            content_type=response.content_type)
