"""What the sinks that connect out (nats, mqtt, websocket) share: a bounded queue in
front of one supervised connection, so that ``write`` never waits for the peer.

``write`` drops (counted) when the broker is not connected (reason
``disconnected``) and, when the queue is full, drops the oldest waiting result
(``queue_full``). One sender task publishes from the queue; a publish that fails or
does not finish within ``timeout`` is dropped (``send_failed``) and the connection
is started over after a back-off (``reconnectDelay`` doubling to
``maxReconnectDelay``). The processor starts even when the broker is down.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from abc import abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import Field, model_validator

from core.attribute_types import Duration, check_delays
from core.sink import Sink, SinkAttributes, SinkItem
from runtime.backoff import Backoff

# Sends one item; returns False when it chose not to send it (and counted why).
Publish = Callable[[SinkItem], Awaitable[bool | None]]


class BrokerSinkAttributes(SinkAttributes):
    timeout: Duration = Field(5.0, gt=0)  # connect, and per publish
    queueSize: int = Field(64, ge=1, alias="queue_size")
    reconnectDelay: Duration = Field(1.0, gt=0, alias="reconnect_delay")
    maxReconnectDelay: Duration = Field(5.0, gt=0, alias="max_reconnect_delay")

    @model_validator(mode="after")
    def _delays(self) -> BrokerSinkAttributes:
        check_delays(self.reconnectDelay, self.maxReconnectDelay, "reconnectDelay",
                     "maxReconnectDelay")
        return self


class BrokerSink(Sink):
    attributes: BrokerSinkAttributes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        attrs = self.attributes
        self._queue: collections.deque[SinkItem] = collections.deque(maxlen=attrs.queueSize)
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._backoff = Backoff(attrs.reconnectDelay, attrs.maxReconnectDelay)
        self._runner: asyncio.Task[None] | None = None
        self.connected = False
        self.connects = 0
        self.last_error: str | None = None

    @property
    @abstractmethod
    def public_url(self) -> str: ...

    @abstractmethod
    async def _session(self) -> None:
        """Connects, then calls ``self._pump(publish)`` until the connection ends."""

    def _redact(self, text: str) -> str:
        return text

    async def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        self._stop.set()
        self._ready.set()
        if self._runner is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._runner, self.attributes.timeout)
        if self._queue:
            self.metrics.dropped("closing", len(self._queue))
            self._queue.clear()

    def status(self) -> dict[str, Any]:
        return {"url": self.public_url, "connected": self.connected,
                "connects": self.connects, "queued": len(self._queue),
                "last_error": self.last_error}

    def write(self, item: SinkItem) -> None:
        if not self.connected:
            self.metrics.dropped("disconnected")
            return
        queue = self._queue
        if len(queue) == queue.maxlen:
            self.metrics.dropped("queue_full")  # the deque drops its oldest
        queue.append(item)
        self._ready.set()

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self._session()
                reason = "the connection ended"
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: count, wait, connect again
                reason = self._redact(str(exc) or type(exc).__name__)
            finally:
                self._disconnected()
            if self._stop.is_set():
                return
            self.last_error = reason
            log = self.logger.warn_with if self._backoff.attempts < 1 else \
                self.logger.debug_with
            log(f"{self.kind} sink not connected; retrying", trigger=self.name,
                url=self.public_url, reason=reason)
            if await self._backoff.wait(self._stop):
                return

    def _disconnected(self) -> None:
        self.connected = False
        if self._queue:
            self.metrics.dropped("disconnected", len(self._queue))
            self._queue.clear()

    async def _pump(self, publish: Publish, alive: Callable[[], bool],
                    closed: asyncio.Future[Any] | None = None) -> None:
        """Marks the sink connected and publishes until the connection ends (``alive()``
        turns false, or ``closed`` completes: noticed at once) or we stop."""
        self.connected = True
        self.connects += 1
        self._backoff.reset()
        self.logger.info_with(f"{self.kind} sink connected", trigger=self.name,
                              url=self.public_url)
        timeout = self.attributes.timeout
        while not self._stop.is_set() and alive():
            if not self._queue:
                self._ready.clear()
                await self._wait_for_items(closed)
                continue
            item = self._queue.popleft()
            try:
                sent = await asyncio.wait_for(publish(item), timeout)
            except Exception:
                self.metrics.dropped("send_failed")
                raise
            if sent is not False:
                self.metrics.sent()

    async def _wait_for_items(self, closed: asyncio.Future[Any] | None) -> None:
        if closed is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), 1.0)
            return
        waiter = asyncio.ensure_future(self._ready.wait())
        try:
            await asyncio.wait({waiter, closed}, timeout=1.0,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
