"""The websocket sink: a client that sends each handler result as one WebSocket message.

It connects at start and reconnects after any loss with a back-off (``reconnectDelay``
doubling up to ``maxReconnectDelay``); the processor starts even when the peer
is down. Results written while disconnected are dropped (reason
``disconnected``); a bounded queue absorbs bursts, and when it is full the oldest
result makes room (reason ``queue_full``). A send that does not finish within
``timeout`` counts as a lost connection. Messages from the peer are read and
ignored (the read is how a close is noticed).

``messageType: text`` sends UTF-8 text frames (a result that is not UTF-8 is
dropped, reason ``not_text``); ``binary`` (the default) sends the bytes as they are.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any, Literal

import aiohttp
from pydantic import Field, field_validator, model_validator

from core.attribute_types import Duration, check_delays, checked_url
from core.sink import Sink, SinkAttributes, SinkItem
from runtime.backoff import Backoff


class WebSocketSinkAttributes(SinkAttributes):
    url: str
    messageType: Literal["binary", "text"] = Field("binary", alias="message_type")
    timeout: Duration = Field(5.0, gt=0)  # connect and per-message send
    headers: dict[str, str] = Field(default_factory=dict)
    queueSize: int = Field(16, ge=1, alias="queue_size")
    reconnectDelay: Duration = Field(1.0, gt=0, alias="reconnect_delay")
    maxReconnectDelay: Duration = Field(5.0, gt=0, alias="max_reconnect_delay")

    @field_validator("url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        return checked_url(value, ("ws", "wss"),
                           "expected a ws:// or wss:// URL, such as 'ws://host:9000/frames'")

    @model_validator(mode="after")
    def _delays(self) -> WebSocketSinkAttributes:
        check_delays(self.reconnectDelay, self.maxReconnectDelay, "reconnectDelay",
                     "maxReconnectDelay")
        return self


class WebSocketSink(Sink):
    kind = "websocket"
    Attributes = WebSocketSinkAttributes
    attributes: WebSocketSinkAttributes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        attrs = self.attributes
        self._queue: collections.deque[SinkItem] = collections.deque(maxlen=attrs.queueSize)
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._backoff = Backoff(attrs.reconnectDelay, attrs.maxReconnectDelay)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._runner: asyncio.Task[None] | None = None
        self.connects = 0
        self._last_error: str | None = None

    async def start(self) -> None:
        self._runner = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        self._stop.set()
        self._ready.set()
        if self._runner is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(self._runner, self.attributes.timeout)
        if self._queue:
            self.metrics.dropped("closing", len(self._queue))
            self._queue.clear()

    def status(self) -> dict[str, Any]:
        return {"url": self.attributes.url, "connected": self._ws is not None,
                "connects": self.connects, "queued": len(self._queue),
                "last_error": self._last_error}

    def write(self, item: SinkItem) -> None:
        if self._ws is None:
            self.metrics.dropped("disconnected")
            return
        queue = self._queue
        if len(queue) == queue.maxlen:
            self.metrics.dropped("queue_full")  # the deque drops its oldest
        queue.append(item)
        self._ready.set()

    # -- the connection ------------------------------------------------------------------------
    async def _run(self) -> None:
        attrs = self.attributes
        timeout = aiohttp.ClientTimeout(total=None, connect=attrs.timeout,
                                        sock_connect=attrs.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._stop.is_set():
                try:
                    async with session.ws_connect(
                            attrs.url, headers=attrs.headers, autoping=True,
                            timeout=aiohttp.ClientWSTimeout(ws_close=attrs.timeout)) as ws:
                        self._ws = ws
                        self.connects += 1
                        self._backoff.reset()
                        self.logger.info_with("WebSocket sink connected", trigger=self.name,
                                              url=attrs.url)
                        await self._serve(ws)
                        reason = "the peer closed the connection"
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    reason = str(exc) or type(exc).__name__
                finally:
                    self._disconnected()
                if self._stop.is_set():
                    return
                self._last_error = reason
                self.logger.warn_with("WebSocket sink disconnected; reconnecting",
                                      trigger=self.name, url=attrs.url, reason=reason,
                                      attempt=self._backoff.attempts + 1)
                if await self._backoff.wait(self._stop):
                    return

    def _disconnected(self) -> None:
        self._ws = None
        if self._queue:
            self.metrics.dropped("disconnected", len(self._queue))
            self._queue.clear()

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Sends until the connection ends (a close read by the reader, or a failed send)."""
        reader = asyncio.ensure_future(self._read_until_closed(ws))
        try:
            while not reader.done() and not self._stop.is_set():
                waiter = asyncio.ensure_future(self._ready.wait())
                await asyncio.wait({reader, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                self._ready.clear()
                while self._queue and not reader.done():
                    await self._send(ws, self._queue.popleft())
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if self._stop.is_set() and not ws.closed:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), self.attributes.timeout)

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, item: SinkItem) -> None:
        timeout = self.attributes.timeout
        if self.attributes.messageType == "text":
            try:
                text = item.body.decode("utf-8")
            except UnicodeDecodeError:
                self.metrics.dropped("not_text")
                return
            sending = ws.send_str(text)
        else:
            sending = ws.send_bytes(item.body)
        try:
            await asyncio.wait_for(sending, timeout)
        except (TimeoutError, ConnectionError, aiohttp.ClientError):
            self.metrics.dropped("send_failed")
            raise
        self.metrics.sent()

    @staticmethod
    async def _read_until_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for _message in ws:
            pass
