"""The async HTTP routes (OpenFaaS's, plus status, dead letters and re-queue).

Routes (``<name>`` is a function name: a DNS label, so it never starts with
``_``, which keeps our own routes from colliding with it):

- ``POST /async-function/<name>[/<path>][?query]``: accept (202); other methods 405
- any request with ``Prefer: respond-async`` on the trigger's own paths: accept
- ``GET /async-function/_calls/<id>``: status (the ``Location`` of a 202)
- ``DELETE /async-function/<id>`` (OpenFaaS Pro) or ``DELETE .../_calls/<id>``: cancel
- ``GET /async-function/_dead/<name>[?limit=N]``: dead letters, oldest first
- ``POST /async-function/_calls/<id>/requeue``: a dead or failed call queued again
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.web_request import BaseRequest

from core.http_server import BodyError, json_error, read_body
from invocations.service import AsyncService, FunctionQueue
from invocations.store import FINAL_STATES, Call, StoreUnavailable
from runtime.responses import JSON, dump_json

PREFIX = "/async-function/"
STATUS_PREFIX = PREFIX + "_calls/"
_CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:~-]{0,127}$")
# Request headers that describe the HTTP message, not the call (the body is stored decoded).
_DROP = {"content-length", "transfer-encoding", "connection", "keep-alive",
         "content-encoding", "expect"}


def wants_async(request: BaseRequest) -> bool:
    if request.path.startswith(PREFIX):
        return True
    prefer = request.headers.get("Prefer")
    return prefer is not None and "respond-async" in prefer.lower()


def _valid_callback(url: str) -> bool:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and \
        (port is None or 0 < port < 65536) and not any(c.isspace() for c in url)


def _json(status: int, value: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=dump_json(value),
                        headers={"Content-Type": JSON, **(headers or {})})


class AsyncRoutes:
    def __init__(self, service: AsyncService, functions: Mapping[str, FunctionQueue],
                 default_function: str | None) -> None:
        self._service = service
        self._functions = functions
        self._default = default_function

    async def handle(self, request: BaseRequest) -> web.StreamResponse:
        try:
            return await self._route(request)
        except StoreUnavailable as exc:
            return json_error(503, f"the async store is unavailable: {exc}")

    async def _route(self, request: BaseRequest) -> web.StreamResponse:
        path, method = request.path, request.method
        if not path.startswith(PREFIX):
            return await self._accept(request, self._default or "", path)
        rest = path[len(PREFIX):]
        name, _, sub = rest.partition("/")
        if name == "_calls":
            call_id, _, action = sub.partition("/")
            if method == "GET" and not action:
                return await self._status(call_id)
            if method == "DELETE" and not action:
                return await self._cancel(call_id)
            if method == "POST" and action == "requeue":
                return await self._requeue(call_id)
            return json_error(405, "expected GET or DELETE on a call, POST on .../requeue")
        if name == "_dead":
            if method != "GET":
                return json_error(405, "expected GET")
            return await self._dead(sub, request)
        if method == "DELETE" and not sub and name not in self._functions:
            return await self._cancel(name)  # OpenFaaS Pro: DELETE /async-function/<call-id>
        if name not in self._functions:
            self._count_refusal("unknown_function")
            return json_error(404, f"no function named {name!r} is served here")
        if method != "POST":
            self._functions[name].metrics.rejected("method_not_allowed")
            return web.Response(status=405, body=dump_json({"error": "expected POST"}),
                                headers={"Content-Type": JSON, "Allow": "POST"})
        return await self._accept(request, name, "/" + sub)

    def _count_refusal(self, reason: str) -> None:
        """Refusals that name no served function are counted under the default one."""
        queue = self._functions.get(self._default or "")
        if queue is not None:
            queue.metrics.rejected(reason)

    async def _accept(self, request: BaseRequest, name: str, path: str) -> web.StreamResponse:
        queue = self._functions.get(name)
        if queue is None:
            return json_error(404, f"no function named {name!r} is served here")
        metrics = queue.metrics
        if not self._service.accepting:
            metrics.rejected("stopping")
            return json_error(503, "the processor is shutting down")
        if not self._service.store.available:
            metrics.rejected("unavailable")
            return json_error(503, "the async store is unavailable: "
                              f"{self._service.store.status().get('reason', 'not ready')}")
        headers = request.headers
        callback = headers.get("X-Callback-Url")
        if callback is not None and not _valid_callback(callback):
            metrics.rejected("bad_callback_url")
            return json_error(400, "X-Callback-Url must be an absolute http(s) URL")
        call_id = headers.get("X-Call-Id")
        if call_id is not None and not _CALL_ID.match(call_id):
            metrics.rejected("bad_call_id")
            return json_error(400, "X-Call-Id must be 1-128 characters of A-Z a-z 0-9 . _ : ~ -"
                              " starting with a letter or digit")
        try:
            body = await read_body(request, queue.max_body)
        except BodyError as exc:
            metrics.rejected(exc.reason)
            return json_error(exc.status, str(exc))
        call_id = call_id or str(uuid.uuid4())
        stored = {str(k): v for k, v in headers.items() if k.lower() not in _DROP}
        stored["X-Call-Id"] = call_id
        policy = queue.settings.retry
        call = Call(id=call_id, function=name, method=request.method, path=path or "/",
                    query=dict(request.query), headers=stored, body=body,
                    content_type=headers.get("Content-Type", ""), callback_url=callback,
                    accepted_ns=time.time_ns(), max_attempts=policy.maxAttempts,
                    due_at=time.time())
        call.digest = call.compute_digest()
        try:
            verdict, known = await self._service.store.accept(call, queue.settings.maxQueued)
        except StoreUnavailable as exc:
            metrics.rejected("unavailable")
            return json_error(503, f"the call was not stored: {exc}")
        if verdict == "full":
            metrics.rejected("queue_full")
            return web.Response(status=429, body=dump_json(
                {"error": f"the async queue of {name!r} is full"}),
                headers={"Content-Type": JSON, "Retry-After": "1"})
        if verdict == "conflict":
            metrics.rejected("call_id_conflict")
            return json_error(409, f"call {call_id!r} is known with a different request")
        if verdict == "duplicate":
            metrics.count("duplicate")
        else:
            metrics.count("accepted")
            queue.dispatcher.wake()
        location = STATUS_PREFIX + known.id
        facts = {"call_id": known.id, "start_time": str(known.accepted_ns), "location": location}
        return _json(202, facts, {"X-Call-Id": known.id, "X-Start-Time": str(known.accepted_ns),
                                  "Location": location})

    async def _status(self, call_id: str) -> web.StreamResponse:
        call = await self._service.store.get(call_id)
        if call is None:
            return json_error(404, f"no call {call_id!r} is known (or it expired)")
        return _json(200, call.public())

    async def _cancel(self, call_id: str) -> web.StreamResponse:
        probe = await self._service.store.get(call_id)
        if probe is not None and probe.state in FINAL_STATES:
            return json_error(409, f"call {probe.id!r} is already {probe.state}")
        call = await self._service.store.cancel(call_id) if probe is not None else None
        if call is None:
            return json_error(404, f"no call {call_id!r} is known (or it expired)")
        queue = self._functions.get(call.function)
        if call.state == "cancelled":
            if queue is not None:
                queue.metrics.count("cancelled")
            self._service.callbacks.wake()
            return _json(202, {"call_id": call.id, "state": "cancelled"})
        if call.state == "running":
            return _json(202, {"call_id": call.id, "state": "running",
                               "note": "running calls are not interrupted; no retry follows"})
        return json_error(409, f"call {call.id!r} is already {call.state}")

    async def _dead(self, name: str, request: BaseRequest) -> web.StreamResponse:
        if name not in self._functions:
            return json_error(404, f"no function named {name!r} is served here")
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "100"))))
        except ValueError:
            return json_error(400, "limit must be an integer")
        calls = await self._service.store.dead_letters(name, limit)
        return _json(200, {"function": name, "dead": [c.public() for c in calls]})

    async def _requeue(self, call_id: str) -> web.StreamResponse:
        probe = await self._service.store.get(call_id)
        if probe is None:
            return json_error(404, f"no call {call_id!r} is known (or it expired)")
        queue = self._functions.get(probe.function)
        if queue is None:
            return json_error(404, f"no function named {probe.function!r} is served here")
        call = await self._service.store.requeue(call_id, queue.settings.retry.maxAttempts)
        if call is None or call.state != "queued":
            state = call.state if call else "gone"
            return json_error(409, f"only dead or failed calls can be re-queued (this is {state})")
        queue.metrics.count("requeued")
        queue.dispatcher.wake()
        return _json(202, {"call_id": call.id, "state": "queued"},
                     {"Location": STATUS_PREFIX + call.id})
