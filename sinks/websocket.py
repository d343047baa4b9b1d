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
import contextlib
from typing import Literal

import aiohttp
from pydantic import Field, field_validator

from core.attribute_types import checked_url
from core.sink import SinkItem
from sinks.broker_sink import BrokerSink, BrokerSinkAttributes


class WebSocketSinkAttributes(BrokerSinkAttributes):
    url: str
    messageType: Literal["binary", "text"] = Field("binary", alias="message_type")
    headers: dict[str, str] = Field(default_factory=dict)
    queueSize: int = Field(16, ge=1, alias="queue_size")

    @field_validator("url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        return checked_url(value, ("ws", "wss"),
                           "expected a ws:// or wss:// URL, such as 'ws://host:9000/frames'")


class WebSocketSink(BrokerSink):
    """The queue, back-off and drop accounting are the connecting sinks' own
    (sinks/broker_sink.py); this class only connects and sends."""

    kind = "websocket"
    Attributes = WebSocketSinkAttributes
    attributes: WebSocketSinkAttributes

    @property
    def public_url(self) -> str:
        return self.attributes.url

    async def _session(self) -> None:
        attrs = self.attributes
        timeout = aiohttp.ClientTimeout(total=None, connect=attrs.timeout,
                                        sock_connect=attrs.timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.ws_connect(
                attrs.url, headers=attrs.headers, autoping=True,
                timeout=aiohttp.ClientWSTimeout(ws_close=attrs.timeout)) as ws:
            # Messages from the peer are read and ignored: the read is how a close is seen.
            reader = asyncio.ensure_future(self._read_until_closed(ws))
            try:
                await self._pump(lambda item: self._send(ws, item), lambda: not reader.done(),
                                 closed=reader)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
                if self._stop.is_set() and not ws.closed:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(ws.close(), attrs.timeout)

    async def _send(self, ws: aiohttp.ClientWebSocketResponse, item: SinkItem) -> bool:
        if self.attributes.messageType == "text":
            try:
                text = item.body.decode("utf-8")
            except UnicodeDecodeError:
                self.metrics.dropped("not_text")
                return False
            await ws.send_str(text)
        else:
            await ws.send_bytes(item.body)
        return True

    @staticmethod
    async def _read_until_closed(ws: aiohttp.ClientWebSocketResponse) -> None:
        async for _message in ws:
            pass
