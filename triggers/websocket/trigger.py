"""The websocket trigger: each WebSocket message is an event; the handler's
response goes back over WebSocket.

aiohttp upgrades connections (``web.WebSocketResponse``) on a
``BoundHTTPServer``, as the HTTP trigger serves requests. Each connection has
a reader (aiohttp's handler task) and a consumer task joined by a bounded
queue: the consumer runs that connection's events through the pool one at a
time, so its replies come back in message order while connections run
concurrently. A client that outruns the handler until its queue is full is
closed with 1013 (try again later); a message over ``maxMessageSize`` closes
the connection with 1009; shutdown closes with 1001 once in-flight replies
are sent.

Replies: a text frame when the response's content type is ``text/*`` or JSON
(and the body is UTF-8), a binary frame otherwise; an empty body sends
nothing; WebSocket has no status code, so only the body travels. With
``reply: broadcast`` a response goes to every open connection, except an
error (status >= 500, e.g. the ``{"error": ...}`` body of a handler
exception, or of no worker within the availability timeout), which goes to
the sender only. ``reply: none`` sends nothing at all.

Connection events (``connectionEvents: true``): before its first message and
after its last, a connection's handler sees an event with an empty body and
the header ``X-Nuclio-WebSocket-Event: connect|disconnect``. Their responses
follow the reply mode like any other: a connect reply reaches the new client
(or everyone, in broadcast mode); a disconnect reply reaches the other
connections in broadcast mode only, since its own client is gone. Shutdown
sends no disconnect events (the workers are stopping).

Events: the body (text frames as their UTF-8 bytes), content type
``text/plain`` or ``application/octet-stream``, the upgrade request's headers,
method GET, its path and URL, and ``fields`` ``connection_id`` (a str) and
``message_num`` (1-based per connection; the latest message's number for an
interval event). Stream windows add ``stream_offset`` (bytes received so far:
the window is the stream's bytes ``[stream_offset - len(body), stream_offset)``);
disconnect events add ``close_code``.

Interval modes (``processing_interval``; see media/windows.py for
the exact stream/discrete semantics) run on one ticker per trigger. In stream
mode a text frame is not stream data: it is an event of its own, in order with
the windows (the seed appends it to the audio). Bytes or a message not yet
emitted when a connection closes are discarded.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.http import WebSocketError
from aiohttp.web_request import BaseRequest

from core.config import Address, ConfigError, parse_address
from core.http_server import BoundHTTPServer
from core.sockets import bind_socket
from media.windows import Latest, SlidingWindow
from runtime.events import RawEvent, new_event_id
from runtime.pool import WorkerUnavailable
from runtime.responses import BINARY, TEXT, RawResponse, error_response
from triggers.base import Trigger
from triggers.websocket.attributes import WebSocketAttributes
from triggers.websocket.connection import Connection, Item, is_text_like, is_utf8

EVENT_HEADER = "X-Nuclio-WebSocket-Event"
# Seconds a closing peer gets to answer our close frame (and a last reply, at shutdown).
CLOSE_TIMEOUT = 2.0
_TEXT_TYPE_CACHE_LIMIT = 64


class WebSocketTrigger(Trigger):
    kind = "websocket"
    Attributes = WebSocketAttributes
    attributes: WebSocketAttributes
    _server: BoundHTTPServer | None = None

    # -- life cycle ------------------------------------------------------------------------
    def bind(self, default_host: str) -> None:
        self.address, source = self._listen_address(default_host)
        self._server = BoundHTTPServer(
            self._upgrade, bind_socket(self.address, f"{self.config.yaml_path}.{source}"))
        self._connections: dict[str, Connection] = {}
        self._upgrading = 0
        self._accepting = True
        self._ticker: asyncio.Task[None] | None = None
        self._text_types: dict[str, bool] = {}

    def _listen_address(self, default_host: str) -> tuple[Address, str]:
        """The address and the YAML key it came from: websocket_addr, port, else url."""
        attrs, path, url = self.attributes, self.config.yaml_path, self.config.url
        from_url = parse_address(url, f"{path}.url", default_host) if url else None
        host = from_url.host if from_url else default_host
        if attrs.websocket_addr is not None:
            given = parse_address(str(attrs.websocket_addr),
                                  f"{path}.attributes.websocket_addr", "")
            return Address(given.host or host, given.port), "attributes.websocket_addr"
        if attrs.port is not None:
            return Address(host, attrs.port), "attributes.port"
        if from_url is not None:
            return from_url, "url"
        raise ConfigError(f"{path}: expected a port to listen on: attributes.port, "
                          "attributes.websocket_addr or url")

    async def start(self) -> None:
        server = self._server
        assert server is not None
        await server.start()
        interval = self.attributes.interval
        if interval:
            self._ticker = asyncio.get_running_loop().create_task(self._tick_forever(interval))
        self.logger.info_with("WebSocket trigger listening", trigger=self.name,
                              address=f"ws://{self.address.host}:{server.port}"
                                      f"{self.attributes.path}",
                              workers=self.pool.size, reply=self.attributes.reply)

    async def stop_accepting(self) -> None:
        """Refuses upgrades and new messages; drops queued messages not yet submitted
        (the pool is about to drain); each connection's in-flight event still replies."""
        if self._server is None:
            return
        self._accepting = False
        self._server.stop_listening()
        if self._ticker is not None:
            self._ticker.cancel()
        for conn in self._connections.values():
            self._count("ws_shutdown", conn.drop_pending(keep_control=False))
            conn.queue.put_nowait(None)

    async def close(self) -> None:
        if self._server is None:
            return
        await asyncio.gather(*(self._close_for_shutdown(c) for c in self._connections.values()),
                             return_exceptions=True)
        await self._server.shutdown(1.0)

    async def _close_for_shutdown(self, conn: Connection) -> None:
        if conn.consumer is not None:  # its last reply goes out before the close frame
            await asyncio.wait({conn.consumer}, timeout=CLOSE_TIMEOUT)
        await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"the processor is stopping")

    # -- connections -----------------------------------------------------------------------
    async def _upgrade(self, request: BaseRequest) -> web.StreamResponse:
        attrs = self.attributes
        if request.path != attrs.path:
            return web.json_response({"error": f"no WebSocket endpoint at {request.path}; "
                                               f"it is at {attrs.path}"}, status=404)
        if not self._accepting:
            return web.json_response({"error": "the processor is stopping"}, status=503)
        if len(self._connections) + self._upgrading >= attrs.maxConnections:
            self.metrics.rejected("ws_connections")
            return web.json_response(
                {"error": f"too many WebSocket connections (maxConnections "
                          f"{attrs.maxConnections})"}, status=503)
        ws: web.WebSocketResponse[Any] = web.WebSocketResponse(
            # aiohttp refuses a frame of exactly max_msg_size; maxMessageSize is allowed.
            max_msg_size=attrs.maxMessageSize + 1, compress=attrs.compression,
            timeout=CLOSE_TIMEOUT, decode_text=False)
        if not ws.can_prepare(request):
            return web.json_response({"error": "expected a WebSocket upgrade request"},
                                     status=400)
        self._upgrading += 1
        try:
            await ws.prepare(request)
        except ConnectionError:
            return ws
        finally:
            self._upgrading -= 1
        if not self._accepting:  # stop_accepting ran while the handshake was on its way
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"the processor is stopping")
            return ws
        conn = Connection(ws, request, self._new_window(), self._new_latest())
        self._connections[conn.id] = conn
        try:
            await self._serve(conn)
        finally:
            del self._connections[conn.id]
        return ws

    def _new_window(self) -> SlidingWindow | None:
        a = self.attributes
        return SlidingWindow(a.chunk_bytes, a.max_bytes, a.trim_bytes) if a.is_stream else None

    def _new_latest(self) -> Latest[Item] | None:
        return Latest() if self.attributes.interval and not self.attributes.is_stream else None

    async def _serve(self, conn: Connection) -> None:
        """Reads until the connection ends, then lets the consumer finish what was accepted."""
        conn.consumer = asyncio.get_running_loop().create_task(self._consume(conn))
        events = self.attributes.connectionEvents
        self.logger.debug_with("WebSocket connection opened", trigger=self.name,
                               connection_id=conn.id, remote=conn.ws.get_extra_info("peername"))
        if events:
            conn.queue.put_nowait(self._control_item(conn, "connect"))
        try:
            await self._read(conn)
        finally:
            if conn.close_code is None:
                conn.close_code = conn.ws.close_code
            if events and self._accepting:
                conn.queue.put_nowait(self._control_item(conn, "disconnect"))
            conn.queue.put_nowait(None)  # a second one (after stop_accepting's) is harmless
            await conn.consumer
            self.logger.debug_with("WebSocket connection closed", trigger=self.name,
                                   connection_id=conn.id, close_code=conn.close_code,
                                   messages=conn.received)

    async def _read(self, conn: Connection) -> None:
        ws = conn.ws
        receive = ws.receive
        on_message = self._on_message
        while True:
            msg = await receive()
            kind = msg.type
            if kind is WSMsgType.TEXT:
                accepted = on_message(conn, msg.data, TEXT)
            elif kind is WSMsgType.BINARY:
                accepted = on_message(conn, msg.data, BINARY)
            else:  # closed by the peer, by us, or a protocol error such as an oversize message
                if isinstance(msg.data, WebSocketError):  # aiohttp closed with msg.data.code
                    conn.close_code = msg.data.code
                    if msg.data.code == WSCloseCode.MESSAGE_TOO_BIG:
                        self.metrics.rejected("ws_too_large")
                return
            if not accepted:
                self._count("ws_backpressure", 1 + conn.drop_pending(keep_control=True))
                self.logger.warn_with("Closing a WebSocket that sends faster than the function "
                                      "handles", trigger=self.name, connection_id=conn.id,
                                      queue_size=self.attributes.queueSize)
                conn.close_code = WSCloseCode.TRY_AGAIN_LATER
                await ws.close(code=WSCloseCode.TRY_AGAIN_LATER,
                               message=b"too many messages waiting; try again later")
                return

    def _on_message(self, conn: Connection, body: bytes, content_type: str) -> bool:
        """Takes one message in; False when the connection's queue is full."""
        conn.received += 1
        if not self._accepting:
            self.metrics.rejected("ws_shutdown")
            return True
        window = conn.window
        if window is not None and content_type == BINARY:
            window.append(body)
            return True
        item = Item(self._event(conn, body, content_type, conn.headers.copy(),
                                 {"connection_id": conn.id, "message_num": conn.received}),
                     time.perf_counter())
        latest = conn.latest
        if latest is not None:
            if latest.offer(item._replace(kind="timed")):
                self.metrics.rejected("ws_superseded")
            return True
        queue = conn.queue
        if queue.qsize() >= self.attributes.queueSize:
            return False
        queue.put_nowait(item)
        return True

    # -- events ----------------------------------------------------------------------------
    def _event(self, conn: Connection, body: bytes, content_type: str, headers: dict[str, Any],
               fields: dict[str, Any]) -> RawEvent:
        return RawEvent(new_event_id(), body, content_type, headers, fields, "GET", conn.path,
                        conn.url, time.time(), "websocket", self.name)

    def _control_item(self, conn: Connection, which: str) -> Item:
        fields: dict[str, Any] = {"connection_id": conn.id, "message_num": conn.received}
        if which == "disconnect":
            fields["close_code"] = conn.close_code
        headers = {**conn.headers, EVENT_HEADER: which}
        return Item(self._event(conn, b"", "", headers, fields), time.perf_counter(), "control")

    async def _tick_forever(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time()
        while True:
            deadline += interval
            await asyncio.sleep(deadline - loop.time())
            for conn in list(self._connections.values()):
                self._tick(conn)
            deadline = max(deadline, loop.time() - interval)  # late: skip, do not burst

    def _tick(self, conn: Connection) -> None:
        """Queues this interval's event for ``conn``, unless its last one is still pending."""
        if conn.timed_pending or conn.ws.closed:
            return
        item: Item | None
        if conn.window is not None:
            body = conn.window.take()
            item = None if body is None else Item(
                self._event(conn, body, BINARY, conn.headers.copy(),
                            {"connection_id": conn.id, "message_num": conn.received,
                             "stream_offset": conn.window.total}),
                time.perf_counter(), "timed")
        else:
            assert conn.latest is not None
            item = conn.latest.take()
        if item is not None:
            conn.timed_pending = True
            conn.queue.put_nowait(item)

    # -- replies ---------------------------------------------------------------------------
    async def _consume(self, conn: Connection) -> None:
        get = conn.queue.get
        submit = self.pool.submit
        observe = self.metrics.observe_latency
        while (item := await get()) is not None:
            try:
                result: RawResponse = await submit(item.event)  # type: ignore[assignment]
            except WorkerUnavailable as exc:
                self.metrics.rejected("no_worker")
                result = error_response(503, str(exc), item.event.id)
            await self._reply(conn, result)
            if item.kind == "timed":
                conn.timed_pending = False
            observe(time.perf_counter() - item.received)

    async def _reply(self, conn: Connection, result: RawResponse) -> None:
        mode = self.attributes.reply
        body = result.body
        if mode == "none" or not body:
            return
        opcode = self._opcode(result.content_type, body)
        if mode == "sender" or result.status >= 500:
            await conn.send(body, opcode)
        else:
            await asyncio.gather(*(c.send(body, opcode) for c in self._connections.values()))

    def _opcode(self, content_type: str, body: bytes) -> WSMsgType:
        text = self._text_types.get(content_type)
        if text is None:
            text = is_text_like(content_type)
            if len(self._text_types) < _TEXT_TYPE_CACHE_LIMIT:
                self._text_types[content_type] = text
        if text and (body.isascii() or is_utf8(body)):
            return WSMsgType.TEXT
        return WSMsgType.BINARY

    def _count(self, reason: str, n: int) -> None:
        for _ in range(n):
            self.metrics.rejected(reason)
