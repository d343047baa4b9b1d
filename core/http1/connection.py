"""One client connection of the lean HTTP/1.1 server: httptools parses, we keep order.

httptools (llhttp, the parser Node.js uses; uvicorn's) calls back per URL, header and
body piece; a request is handed to the handler only once it is whole and its body
decoded, so handlers never read from the network. Requests pipelined on one
connection are answered in order, one at a time (a few wait parsed; past that the
connection stops reading). A body over the limit is answered 413 as soon as it is
known, its rest read and dropped, and the connection closed after it, so a client
that is still sending gets its answer rather than a reset.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, cast
from urllib.parse import unquote

import httptools

from core.http1.message import Reply, Request, StreamReply, encode_reply, error_reply
from core.http_body import BodyError, BodyTooLarge, decode_body

Handler = Callable[[Request], Awaitable[Reply]]

_METHODS: dict[bytes, str] = {}
_WAITING_LIMIT = 8  # parsed requests held per connection before it stops reading
_LINGER = 2.0  # seconds a refused body may go on arriving before the connection closes
# Header names looked at while parsing, by length (so most headers cost one len()).
_CONTENT_LENGTH, _EXPECT, _CONTENT_ENCODING = b"content-length", b"expect", b"content-encoding"
_TRANSFER_ENCODING = b"transfer-encoding"
_WATCHED = {len(_CONTENT_LENGTH), len(_EXPECT), len(_CONTENT_ENCODING), len(_TRANSFER_ENCODING)}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class UpgradeWithBody(BodyError):
    """A request asking to switch protocols (``Upgrade``, e.g. h2c) that also carries a
    body: not served (websockets have their own trigger)."""

    status = 501
    reason = "upgrade_with_body"

    def __init__(self) -> None:
        super().__init__("a request with both an Upgrade header and a body is not served; "
                         "send it without Upgrade")


def _method(raw: bytes) -> str:
    method = _METHODS.get(raw)
    if method is None:
        method = _METHODS[raw] = raw.decode("ascii", "replace")
    return method


class Host(Protocol):
    """What a connection needs of its server (server.HTTP1Server)."""

    loop: asyncio.AbstractEventLoop
    handler: Handler
    max_body: int
    accepting: bool
    connections: set[Connection]

    def track(self, answer: Coroutine[Any, Any, None]) -> None: ...


class Connection(asyncio.Protocol):
    def __init__(self, server: Host) -> None:
        self._server = server
        self._limit = server.max_body
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiting: deque[Request] = deque()
        self._busy = False  # a task is answering this connection's requests
        self._closing = False  # close once the current answer is written
        self._reading = True
        self._writable: asyncio.Future[None] | None = None  # set while writing is paused
        self.idle_since = server.loop.time()
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._length = -1
        self._encoding = ""
        self._expect = False
        self._error: BodyError | None = None
        self._answered_early = False
        self._in_message = False

    # -- asyncio.Protocol -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._waiting.clear()
        self._server.connections.discard(self)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # The request was dispatched as plain HTTP (on_message_complete, just before);
            # what follows is another protocol's: read no more, close after the answer.
            self._closing = True
            if self._transport is not None:
                self._transport.pause_reading()
        except httptools.HttpParserError as exc:
            self._refuse(f"bad HTTP request: {exc}")

    def pause_writing(self) -> None:
        self._writable = self._server.loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- httptools callbacks ----------------------------------------------------
    def on_message_begin(self) -> None:
        self._in_message = True

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        text = value.decode("utf-8", "surrogateescape")
        self._headers[name.decode("utf-8", "surrogateescape")] = text
        if len(name) in _WATCHED:
            lowered = name.lower()
            if lowered == _CONTENT_LENGTH:
                self._length = int(text) if text.isdigit() else -1
            elif lowered == _CONTENT_ENCODING:
                self._encoding = text.strip().lower()
            elif lowered == _EXPECT:
                self._expect = text.strip().lower() == "100-continue"
            elif lowered == _TRANSFER_ENCODING:
                self._length = max(self._length, 1)  # a body of unknown length

    def on_headers_complete(self) -> None:
        if self._length > 0 and self._parser.should_upgrade():
            # llhttp hands what follows an Upgrade's head over as the new protocol's bytes,
            # so a body sent with one would be lost: refused rather than run without it.
            self._error = UpgradeWithBody()
        elif self._length > self._limit:
            self._error = BodyTooLarge.over(self._limit)
        if self._error is not None:
            # Answer now, without waiting for a body we would drop; close after it.
            self._answered_early = True
            self._closing = True
            self._dispatch(self._request(b""))
        elif self._expect and self._transport is not None:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        if self._error is not None:
            return  # refused: read and dropped
        self._size += len(body)
        if self._size > self._limit:
            self._error = BodyTooLarge.over(self._limit)
            self._body = []
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        if self._answered_early:
            self._reset()
            if not self._busy:
                self._close()
            return
        body = b"".join(self._body) if len(self._body) != 1 else self._body[0]
        if self._encoding and self._error is None and body:
            try:
                body = decode_body(body, self._encoding, self._limit)
            except BodyError as exc:
                self._error = exc
        request = self._request(body)
        self._reset()
        self._dispatch(request)

    # -- requests and answers ---------------------------------------------------
    def _request(self, body: bytes) -> Request:
        target = self._url.decode("utf-8", "surrogateescape")
        if not target.startswith("/"):  # absolute form (a proxy's), or "*"
            try:
                parsed = httptools.parse_url(self._url)
                path = (parsed.path or b"/").decode("utf-8", "surrogateescape")
                query = (parsed.query or b"").decode("utf-8", "surrogateescape")
                target = f"{path}?{query}" if query else path
            except httptools.HttpParserInvalidURLError:
                path, query = target, ""
        else:
            path, _, query = target.partition("?")
            if "#" in query:
                query = query.partition("#")[0]
        if "%" in path:
            path = unquote(path, errors="replace")
        parser = self._parser
        request = Request(_method(parser.get_method()), path, target, query, self._headers,
                          body, self._error)
        request.keep_alive = parser.should_keep_alive()
        request.http10 = parser.get_http_version() == "1.0"
        return request

    def _dispatch(self, request: Request) -> None:
        if self._busy:
            self._waiting.append(request)
            if len(self._waiting) >= _WAITING_LIMIT and self._transport is not None:
                self._transport.pause_reading()
                self._reading = False
            return
        self._busy = True
        self._server.track(self._answer(request))

    async def _answer(self, request: Request) -> None:
        """Answers the request, then any that arrived behind it, in order."""
        server = self._server
        while True:
            try:
                reply = await server.handler(request)
            except Exception as exc:  # a bug in a handler: the client gets a 500, logged
                server.loop.call_exception_handler({
                    "message": f"HTTP handler failed on {request.method} {request.path}",
                    "exception": exc})
                reply = error_reply(500, "internal server error")
            transport = self._transport
            if transport is None:
                break  # the client went away; the answer has nowhere to go
            keep_alive = request.keep_alive and not self._closing and server.accepting
            head_only = request.method == "HEAD"
            transport.write(encode_reply(reply, head_only, keep_alive, request.http10))
            if isinstance(reply, StreamReply) and not await self._stream(reply, head_only):
                break
            if not keep_alive:
                self._closing = True
                self._close()
                break
            if self._writable is not None:
                await self._writable
            if not self._waiting:
                break
            request = self._waiting.popleft()
            if not self._reading and self._transport is not None:
                self._transport.resume_reading()
                self._reading = True
        self._busy = False
        self.idle_since = server.loop.time()

    async def _stream(self, reply: StreamReply, head_only: bool) -> bool:
        """Writes a streamed body as chunks, waiting while the client is behind; False
        when the client went away first (the producer is closed either way)."""
        chunks = reply.chunks
        try:
            if head_only:
                return True
            async for chunk in chunks:
                if self._transport is None:
                    return False
                if chunk:
                    self._transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                if self._writable is not None:
                    await self._writable
            if self._transport is None:
                return False
            self._transport.write(b"0\r\n\r\n")
            return True
        finally:
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    def _refuse(self, message: str) -> None:
        """A request we cannot parse: a 400 and closed, or, while an earlier request is
        being answered, closed after that answer (reading stops now)."""
        self._closing = True
        if self._transport is None:
            return
        if self._busy:
            self._transport.pause_reading()  # the answer in progress closes the connection
            return
        self._transport.write(encode_reply(error_reply(400, message), False, False, False))
        self._transport.close()

    def _close(self) -> None:
        """Closes once nothing more is owed; a refused body still arriving gets a moment
        to finish, so the client reads its 413 instead of a reset."""
        transport = self._transport
        if transport is None:
            return
        if self._in_message and self._answered_early:
            self._server.loop.call_later(_LINGER, transport.close)
            return
        transport.close()

    @property
    def idle(self) -> bool:
        return not self._busy and not self._in_message

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def close_if_idle(self) -> None:
        if self.idle:
            self.close()

