"""``context.platform.call_function`` as a worker sees it.

The handler's ``nuclio_sdk.Platform`` is our ``CallingPlatform``: it turns the event
the handler passes into a ``RawEvent`` and hands it to the processor, which decides
where the function runs (``fusion``: in one of its own pools, or over HTTP). How the
call reaches the processor depends on where the worker lives:

- thread and async workers share the processor's process: ``install`` gives this
  module the processor's dispatch coroutine and loop;
- a process worker has no such thing; ``process_main`` installs a ``WireCalls`` that
  sends the call over the worker's socket and blocks for the answer.

The answer comes back as Nuclio's ``call_function`` returns it: a
``nuclio_sdk.Response`` with lower-case headers, a ``content-type`` header, and the
body parsed when it is JSON. A non-2xx status is returned, not raised.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import nuclio_sdk

from runtime.events import RawEvent, is_json_content_type, new_event_id
from runtime.logger import event_headers
from runtime.responses import RawResponse, dump_json

if TYPE_CHECKING:
    import asyncio

Dispatch = Callable[[str, RawEvent, float | None], Coroutine[Any, Any, RawResponse]]

# Headers the next hop inherits from the event being handled, unless the handler's event
# names them itself: the trace, and how deep the chain of calls is already.
_INHERITED = ("traceparent", "tracestate", "x-nuclio-call-depth")
# Transport headers that differ between a local and an HTTP answer: dropped from both,
# so a response is the same whether the callee is fused or apart.
_TRANSPORT = frozenset({"content-length", "date", "server", "connection", "keep-alive",
                        "transfer-encoding"})
_DROP_OUT = frozenset({"content-length", "host", "connection", "transfer-encoding",
                       "keep-alive", "expect"})


class CallError(RuntimeError):
    """A call made where it cannot work (e.g. the blocking call on the event loop)."""


class WorkerCalls(Protocol):
    """How a worker outside the processor's process reaches the processor."""

    def call(self, name: str, event: RawEvent, timeout: float | None) -> RawResponse: ...


_dispatch: Dispatch | None = None
_loop: asyncio.AbstractEventLoop | None = None
_worker_calls: WorkerCalls | None = None


def install(dispatch: Dispatch, loop: asyncio.AbstractEventLoop) -> None:
    """The processor's way to run a call (its loop runs ``dispatch``)."""
    global _dispatch, _loop
    _dispatch, _loop = dispatch, loop


def installed_dispatch() -> Dispatch | None:
    return _dispatch


def uninstall() -> None:
    global _dispatch, _loop
    _dispatch = _loop = None


def install_worker_calls(calls: WorkerCalls) -> None:
    """A process worker's way to the processor (the worker's socket)."""
    global _worker_calls
    _worker_calls = calls


def to_call_event(name: str, event: Any) -> RawEvent:
    """The handler's event as the callee will get it; encoded as Nuclio does (a dict body
    is JSON, else the event's content type, else text/plain)."""
    body = getattr(event, "body", None)
    content_type = getattr(event, "content_type", None) or ""
    if isinstance(body, dict | list):
        data, content_type = dump_json(body), "application/json"
    elif isinstance(body, str):
        data = body.encode()
    elif isinstance(body, bytes | bytearray | memoryview):
        data = bytes(body)
    elif body is None:
        data = b""
    else:
        data = str(body).encode()
    content_type = content_type or "text/plain"
    headers = {str(k): v if isinstance(v, str) else str(v)
               for k, v in dict(getattr(event, "headers", None) or {}).items()
               if str(k).lower() not in _DROP_OUT}
    lowered = {k.lower() for k in headers}
    parent = event_headers.get() or {}
    for key, value in parent.items():
        if key.lower() in _INHERITED and key.lower() not in lowered:
            headers[key.lower()] = str(value)
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    headers["Content-Type"] = content_type
    fields = dict(getattr(event, "fields", None) or {})
    path = getattr(event, "path", None) or "/"
    method = getattr(event, "method", None) or "POST"
    return RawEvent(new_event_id(), data, content_type, headers, fields, str(method).upper(),
                    str(path), str(path), time.time(), "http", name)


def to_sdk_response(raw: RawResponse) -> nuclio_sdk.Response:
    headers = {str(k).lower(): v for k, v in raw.headers.items()
               if str(k).lower() not in _TRANSPORT}
    content_type = headers.get("content-type") or raw.content_type or "text/plain"
    headers["content-type"] = content_type
    body: Any = raw.body
    if body and is_json_content_type(content_type):
        with contextlib.suppress(ValueError):  # Nuclio would raise; bytes are more use
            body = json.loads(body)
    return nuclio_sdk.Response(headers=headers, body=body, content_type=content_type,
                               status_code=raw.status)


# asyncio is imported only where a processor's loop is installed (``install``), the one
# case that uses it: a process worker makes its calls over its socket and, with a sync
# handler, never imports asyncio at all, which shortens every cold start.
def _on_processor_loop() -> bool:
    import asyncio

    try:
        return asyncio.get_running_loop() is _loop
    except RuntimeError:
        return False


def call_blocking(name: str, raw: RawEvent, timeout: float | None) -> RawResponse:
    if _worker_calls is not None:
        return _worker_calls.call(name, raw, timeout)
    if _dispatch is None or _loop is None:
        raise CallError("call_function: this worker is not connected to a processor")
    if _on_processor_loop():
        raise CallError("call_function blocks, and this handler runs on the processor's "
                        "event loop: use 'await context.platform.call_function_async(...)'")
    import asyncio

    return asyncio.run_coroutine_threadsafe(_dispatch(name, raw, timeout), _loop).result()


async def call_awaitable(name: str, raw: RawEvent, timeout: float | None) -> RawResponse:
    if _worker_calls is not None:
        return _worker_calls.call(name, raw, timeout)  # a process worker: one event at a time
    if _dispatch is None or _loop is None:
        raise CallError("call_function_async: this worker is not connected to a processor")
    if _on_processor_loop():
        return await _dispatch(name, raw, timeout)
    # A private loop (an async handler on a thread worker): wait without blocking it.
    import asyncio

    return await asyncio.wrap_future(
        asyncio.run_coroutine_threadsafe(_dispatch(name, raw, timeout), _loop))


class CallingPlatform(nuclio_sdk.Platform):
    """Nuclio's platform object with calls routed through the processor."""

    def call_function(self, function_name: str, event: Any, node: Any = None,
                      timeout: float | None = None, service_name_override: Any = None
                      ) -> nuclio_sdk.Response:
        """Nuclio's signature; ``node`` and ``service_name_override`` are accepted and
        ignored (the address map in platform.yaml says where a function runs)."""
        raw = to_call_event(function_name, event)
        return to_sdk_response(call_blocking(function_name, raw, timeout))

    async def call_function_async(self, function_name: str, event: Any, node: Any = None,
                                  timeout: float | None = None,
                                  service_name_override: Any = None) -> nuclio_sdk.Response:
        """The awaitable variant, for ``async def`` handlers."""
        raw = to_call_event(function_name, event)
        return to_sdk_response(await call_awaitable(function_name, raw, timeout))
