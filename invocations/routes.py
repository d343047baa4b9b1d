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

from core.http1 import Reply, Request, error_reply, json_reply
from core.http_body import BodyError
from invocations.service import AsyncService, FunctionQueue
from invocations.store import FINAL_STATES, Call, StoreUnavailable

PREFIX = "/async-function/"
STATUS_PREFIX = PREFIX + "_calls/"
_CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:~-]{0,127}$")
# Request headers that describe the HTTP message, not the call (the body is stored decoded).
_DROP = {"content-length", "transfer-encoding", "connection", "keep-alive",
         "content-encoding", "expect"}


def wants_async(request: Request) -> bool:
    if request.path.startswith(PREFIX):
        return True
    prefer = request.header("Prefer")
    return prefer is not None and "respond-async" in prefer.lower()


def _valid_callback(url: str) -> bool:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and \
        (port is None or 0 < port < 65536) and not any(c.isspace() for c in url)


class AsyncRoutes:
    def __init__(self, service: AsyncService, functions: Mapping[str, FunctionQueue],
                 default_function: str | None) -> None:
        self._service = service
        self._functions = functions
        self._default = default_function

    async def handle(self, request: Request) -> Reply:
        try:
            return await self._route(request)
        except StoreUnavailable as exc:
            return error_reply(503, f"the async store is unavailable: {exc}")

    async def _route(self, request: Request) -> Reply:
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
            return error_reply(405, "expected GET or DELETE on a call, POST on .../requeue")
        if name == "_dead":
            if method != "GET":
                return error_reply(405, "expected GET")
            return await self._dead(sub, request)
        if method == "DELETE" and not sub and name not in self._functions:
            return await self._cancel(name)  # OpenFaaS Pro: DELETE /async-function/<call-id>
        if name not in self._functions:
            self._count_refusal("unknown_function")
            return error_reply(404, f"no function named {name!r} is served here")
        if method != "POST":
            self._functions[name].metrics.rejected("method_not_allowed")
            return json_reply(405, {"error": "expected POST"}, {"Allow": "POST"})
        return await self._accept(request, name, "/" + sub)

    def _count_refusal(self, reason: str) -> None:
        """Refusals that name no served function are counted under the default one."""
        queue = self._functions.get(self._default or "")
        if queue is not None:
            queue.metrics.rejected(reason)

    async def _accept(self, request: Request, name: str, path: str) -> Reply:
        queue = self._functions.get(name)
        if queue is None:
            return error_reply(404, f"no function named {name!r} is served here")
        metrics = queue.metrics
        if not self._service.accepting:
            metrics.rejected("stopping")
            return error_reply(503, "the processor is shutting down")
        if not self._service.store.available:
            metrics.rejected("unavailable")
            return error_reply(503, "the async store is unavailable: "
                               f"{self._service.store.status().get('reason', 'not ready')}")
        headers = request.headers
        callback = request.header("X-Callback-Url")
        if callback is not None and not _valid_callback(callback):
            metrics.rejected("bad_callback_url")
            return error_reply(400, "X-Callback-Url must be an absolute http(s) URL")
        call_id = request.header("X-Call-Id")
        if call_id is not None and not _CALL_ID.match(call_id):
            metrics.rejected("bad_call_id")
            return error_reply(400, "X-Call-Id must be 1-128 characters of A-Z a-z 0-9 . _ : ~ -"
                               " starting with a letter or digit")
        try:
            body = request.take_body(queue.max_body)
        except BodyError as exc:
            metrics.rejected(exc.reason)
            return error_reply(exc.status, str(exc))
        call_id = call_id or str(uuid.uuid4())
        stored = {k: v for k, v in headers.items() if k.lower() not in _DROP}
        stored["X-Call-Id"] = call_id
        policy = queue.settings.retry
        call = Call(id=call_id, function=name, method=request.method, path=path or "/",
                    query=dict(request.query), headers=stored, body=body,
                    content_type=request.header("Content-Type") or "", callback_url=callback,
                    accepted_ns=time.time_ns(), max_attempts=policy.maxAttempts,
                    due_at=time.time())
        call.digest = call.compute_digest()
        try:
            verdict, known = await self._service.store.accept(call, queue.settings.maxQueued)
        except StoreUnavailable as exc:
            metrics.rejected("unavailable")
            return error_reply(503, f"the call was not stored: {exc}")
        if verdict == "full":
            metrics.rejected("queue_full")
            return json_reply(429, {"error": f"the async queue of {name!r} is full"},
                              {"Retry-After": "1"})
        if verdict == "conflict":
            metrics.rejected("call_id_conflict")
            return error_reply(409, f"call {call_id!r} is known with a different request")
        if verdict == "duplicate":
            metrics.count("duplicate")
        else:
            metrics.count("accepted")
            queue.dispatcher.wake()
        location = STATUS_PREFIX + known.id
        facts = {"call_id": known.id, "start_time": str(known.accepted_ns), "location": location}
        return json_reply(202, facts, {"X-Call-Id": known.id,
                                       "X-Start-Time": str(known.accepted_ns),
                                       "Location": location})

    async def _status(self, call_id: str) -> Reply:
        call = await self._service.store.get(call_id)
        if call is None:
            return error_reply(404, f"no call {call_id!r} is known (or it expired)")
        return json_reply(200, call.public())

    async def _cancel(self, call_id: str) -> Reply:
        probe = await self._service.store.get(call_id)
        if probe is not None and probe.state in FINAL_STATES:
            return error_reply(409, f"call {probe.id!r} is already {probe.state}")
        call = await self._service.store.cancel(call_id) if probe is not None else None
        if call is None:
            return error_reply(404, f"no call {call_id!r} is known (or it expired)")
        queue = self._functions.get(call.function)
        if call.state == "cancelled":
            if queue is not None:
                queue.metrics.count("cancelled")
            self._service.callbacks.wake()
            return json_reply(202, {"call_id": call.id, "state": "cancelled"})
        if call.state == "running":
            return json_reply(202, {"call_id": call.id, "state": "running",
                                    "note": "running calls are not interrupted; no retry follows"})
        return error_reply(409, f"call {call.id!r} is already {call.state}")

    async def _dead(self, name: str, request: Request) -> Reply:
        if name not in self._functions:
            return error_reply(404, f"no function named {name!r} is served here")
        try:
            limit = max(1, min(1000, int(request.query.get("limit", "100"))))
        except ValueError:
            return error_reply(400, "limit must be an integer")
        calls = await self._service.store.dead_letters(name, limit)
        return json_reply(200, {"function": name, "dead": [c.public() for c in calls]})

    async def _requeue(self, call_id: str) -> Reply:
        probe = await self._service.store.get(call_id)
        if probe is None:
            return error_reply(404, f"no call {call_id!r} is known (or it expired)")
        queue = self._functions.get(probe.function)
        if queue is None:
            return error_reply(404, f"no function named {probe.function!r} is served here")
        call = await self._service.store.requeue(call_id, queue.settings.retry.maxAttempts)
        if call is None or call.state != "queued":
            state = call.state if call else "gone"
            return error_reply(409, f"only dead or failed calls can be re-queued (this is {state})")
        queue.metrics.count("requeued")
        queue.dispatcher.wake()
        return json_reply(202, {"call_id": call.id, "state": "queued"},
                          {"Location": STATUS_PREFIX + call.id})
