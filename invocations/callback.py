"""The POST to ``X-Callback-Url`` once a call reaches its final outcome.

One sender per store (all functions' calls). Pending callbacks live in the store,
so one that could not be delivered before a restart is sent after it (at least
once; a callback in flight at a crash may arrive twice). Connection errors, 429
and 5xx are retried with back-off up to ``callback.maxAttempts``; redirects are
not followed (a 3xx is a failed delivery); other 4xx are final.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable

import aiohttp

from invocations.config import CallbackSettings
from invocations.metrics import AsyncMetrics
from invocations.signing import signature
from invocations.store import Call, CallStore, StoreUnavailable
from invocations.waiting import wait_event
from runtime.logger import Logger

# Response headers of the function that describe its own HTTP message, not the result.
_SKIP = {"content-length", "transfer-encoding", "connection", "keep-alive", "host",
         "content-encoding"}


def callback_headers(call: Call, retry_max: int) -> dict[str, str]:
    """The function's response headers plus the OpenFaaS callback headers."""
    headers = {k: v for k, v in call.resp_headers.items() if k.lower() not in _SKIP
               and not k.lower().startswith("x-function-")}
    if not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = call.resp_content_type or "text/plain"
    headers.update({
        "X-Call-Id": call.id,
        "X-Function-Status": str(call.status if call.status is not None else 503),
        "X-Function-Name": call.function,
        "X-Duration-Seconds": "%f" % (call.duration or 0.0),
        "X-Start-Time": str(call.accepted_ns),
        "X-Retry": str(max(0, call.attempts - 1)),
        "X-Retry-Max": str(retry_max),
    })
    return headers


class CallbackSender:
    def __init__(self, store: CallStore, settings_for: Callable[[str], CallbackSettings],
                 retry_max_for: Callable[[str], int],
                 metrics_for: Callable[[str], AsyncMetrics | None], logger: Logger) -> None:
        self._store = store
        self._settings_for = settings_for
        self._retry_max_for = retry_max_for
        self._metrics_for = metrics_for
        self._logger = logger
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._limit = asyncio.Semaphore(16)

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stops sending; callbacks not delivered stay pending in the store."""
        tasks = [t for t in (self._task, *self._sending) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                calls, next_due = await self._store.callbacks_due(64)
            except StoreUnavailable:
                calls, next_due = [], 1.0
            except Exception as exc:  # e.g. NATS going away mid-batch: never end the loop
                self._logger.error_with("Async callbacks could not be read", error=repr(exc))
                calls, next_due = [], 1.0
            for call in calls:
                await self._limit.acquire()
                task = asyncio.create_task(self._send(call))
                self._sending.add(task)
                task.add_done_callback(self._sending.discard)
            if calls:
                continue
            await wait_event(self._wake, 5.0 if next_due is None else min(next_due, 5.0))

    async def _send(self, call: Call) -> None:
        try:
            await self._deliver(call)
        finally:
            self._limit.release()

    async def _deliver(self, call: Call) -> None:
        assert self._session is not None and call.callback_url is not None
        settings = self._settings_for(call.function)
        metrics = self._metrics_for(call.function)
        body = call.resp_body or b""
        headers = callback_headers(call, self._retry_max_for(call.function))
        secret = settings.secret()
        if secret is not None:
            headers["X-Signature"] = signature(secret, call.id, body)
        status: int | None = None
        try:
            async with self._session.post(
                    call.callback_url, data=body, headers=headers, allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=settings.timeout)) as resp:
                status = resp.status
                await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self._logger.debug_with("Callback failed", call_id=call.id, error=str(exc))
        attempt = call.callback_attempts + 1
        if status is not None and 200 <= status < 300:
            state, outcome = "delivered", "delivered"
        elif status is not None and status < 500 and status != 429:
            state, outcome = "failed", "rejected"  # 3xx (not followed) and 4xx are final
        elif attempt >= settings.maxAttempts:
            state, outcome = "failed", "gave_up"
        else:
            state, outcome = "pending", "retried"
        delay = min(settings.maxDelay, settings.initialDelay * 2 ** (attempt - 1))
        delay *= random.uniform(0.9, 1.1)
        if metrics is not None:
            metrics.callback(outcome)
        if state == "failed":
            self._logger.warn_with("Callback not delivered", call_id=call.id, status=status,
                                   attempts=attempt)
        try:
            await self._store.callback_result(call, state, status, delay)  # type: ignore[arg-type]
        except Exception as exc:  # stays pending in the store: sent again later
            self._logger.warn_with("Could not record a callback outcome", call_id=call.id,
                                   error=f"{type(exc).__name__}: {exc}")
        if state == "pending":
            self._wake.set()
