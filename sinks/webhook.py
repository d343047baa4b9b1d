"""The webhook sink: one HTTP request per handler result.

The body is the result as the handler made it, with its content type; the
frame's metadata travels as headers ``X-Nuclio-<Field>`` (``frame_num`` ->
``X-Nuclio-Frame-Num``; also ``X-Nuclio-Timestamp``, ``X-Nuclio-Url`` and any
media fields), next to the configured ``headers``.

Requests run on ``maxInFlight`` sender tasks fed by a bounded queue, never on
the trigger's path: when the queue is full the oldest waiting result makes room
(reason ``queue_full``). A connection error, a timeout, 429 or a 5xx is retried
up to ``maxRetries`` times, after ``retryDelay`` doubling up to
``maxRetryDelay`` (reason ``failed`` when they are used up); another non-2xx
status is not retried (reason ``rejected``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Mapping
from typing import Any, Literal

import aiohttp
from pydantic import Field, field_validator, model_validator

from core.attribute_types import Duration, check_delays, checked_url
from core.sink import Sink, SinkAttributes, SinkItem
from runtime.backoff import Backoff

FIELD_HEADER_PREFIX = "X-Nuclio-"
_header_names: dict[str, str] = {}


def field_header(name: str) -> str:
    """``frame_num`` -> ``X-Nuclio-Frame-Num`` (cached: fields repeat on every item)."""
    header = _header_names.get(name)
    if header is None:
        words = name.replace("-", "_").split("_")
        header = _header_names[name] = FIELD_HEADER_PREFIX + "-".join(
            w[:1].upper() + w[1:] for w in words if w)
    return header


def _header_value(value: Any) -> str:
    return str(value).replace("\r", " ").replace("\n", " ")


class WebhookSinkAttributes(SinkAttributes):
    url: str
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: Duration = Field(5.0, gt=0)  # per attempt
    maxRetries: int = Field(3, ge=0, alias="max_retries")
    retryDelay: Duration = Field(1.0, gt=0, alias="retry_delay")
    maxRetryDelay: Duration = Field(10.0, gt=0, alias="max_retry_delay")
    maxInFlight: int = Field(4, ge=1, alias="max_in_flight")
    queueSize: int = Field(64, ge=1, alias="queue_size")

    @field_validator("method", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return checked_url(value, ("http", "https"), "expected an http:// or https:// URL, "
                                                     "such as 'http://host:8000/frames'")

    @model_validator(mode="after")
    def _delays(self) -> WebhookSinkAttributes:
        check_delays(self.retryDelay, self.maxRetryDelay, "retryDelay", "maxRetryDelay")
        return self


class _Retry(Exception):
    """This attempt failed in a way worth another try."""


class WebhookSink(Sink):
    kind = "webhook"
    Attributes = WebhookSinkAttributes
    attributes: WebhookSinkAttributes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queue: collections.deque[SinkItem] = collections.deque(
            maxlen=self.attributes.queueSize)
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._senders: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._in_flight = 0
        self.retries = 0

    async def start(self) -> None:
        attrs = self.attributes
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=attrs.timeout))
        loop = asyncio.get_running_loop()
        self._senders = [loop.create_task(self._send_forever()) for _ in range(attrs.maxInFlight)]

    async def close(self) -> None:
        """Lets requests in flight finish (one timeout at most); waiting ones are dropped."""
        self._stop.set()
        if self._queue:
            self.metrics.dropped("closing", len(self._queue))
            self._queue.clear()
        self._ready.set()
        if self._senders:
            _, pending = await asyncio.wait(self._senders, timeout=self.attributes.timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    def status(self) -> dict[str, Any]:
        return {"url": self.attributes.url, "queued": len(self._queue),
                "in_flight": self._in_flight, "retries": self.retries}

    def write(self, item: SinkItem) -> None:
        queue = self._queue
        if len(queue) == queue.maxlen:
            self.metrics.dropped("queue_full")  # the deque drops its oldest
        queue.append(item)
        self._ready.set()

    # -- senders -----------------------------------------------------------------------------------
    async def _send_forever(self) -> None:
        queue, ready = self._queue, self._ready
        while not self._stop.is_set():
            if not queue:
                ready.clear()
                await ready.wait()
                continue
            item = queue.popleft()
            if queue:
                ready.set()  # wake another sender for the rest
            self._in_flight += 1
            try:
                await self._deliver(item)
            finally:
                self._in_flight -= 1

    async def _deliver(self, item: SinkItem) -> None:
        attrs = self.attributes
        headers = {**attrs.headers, **self._field_headers(item.fields),
                   "Content-Type": item.content_type}
        backoff: Backoff | None = None
        for attempt in range(attrs.maxRetries + 1):
            if attempt:
                self.retries += 1
                if backoff is None:
                    backoff = Backoff(attrs.retryDelay, attrs.maxRetryDelay)
                if await backoff.wait(self._stop):
                    self.metrics.dropped("closing")
                    return
            try:
                status = await self._attempt(attrs.method, item.body, headers)
            except _Retry as exc:
                self.logger.debug_with("Webhook attempt failed", trigger=self.name,
                                       url=attrs.url, attempt=attempt + 1, error=str(exc))
                continue
            if 200 <= status < 300:
                self.metrics.sent()
            else:
                self.metrics.dropped("rejected")
                self.logger.warn_with("Webhook refused a result", trigger=self.name,
                                      url=attrs.url, status=status)
            return
        self.metrics.dropped("failed")
        self.logger.warn_with("Webhook failed after retries", trigger=self.name, url=attrs.url,
                              attempts=attrs.maxRetries + 1)

    async def _attempt(self, method: str, body: bytes, headers: dict[str, str]) -> int:
        assert self._session is not None
        try:
            async with self._session.request(method, self.attributes.url, data=body,
                                             headers=headers) as response:
                with contextlib.suppress(aiohttp.ClientError):
                    await response.read()  # free the connection for reuse
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _Retry(str(exc) or type(exc).__name__) from None
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status}")
        return status

    @staticmethod
    def _field_headers(fields: Mapping[str, Any]) -> dict[str, str]:
        return {field_header(name): _header_value(value) for name, value in fields.items()
                if value is not None}
