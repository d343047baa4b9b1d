"""The mjpeg sink: serves the handler's images as ``multipart/x-mixed-replace`` to any
number of HTTP clients (browsers, ffplay, VLC, ``<img src>``).

Each frame's part (headers, body, line end) is built once and written to every
client's transport at once: no task or queue per client. A client whose unsent
bytes exceed ``clientQueue`` frames skips frames (counted, reason
``slow_client``) until it catches up, and never slows the others or the
trigger. A new client gets the latest frame at once, so a player shows a picture
without waiting for the next one. Frames written while nobody watches are
counted as dropped with reason ``no_clients`` (the latest is kept). While the trigger
has it corked (a burst of frames read together), parts are held and then written
to each client in one go, so a client wakes once per burst rather than per frame.

The server is a small asyncio protocol rather than aiohttp: it only has to read
one GET, and writing parts straight to the transport (the body ends when the
connection does, so no chunked framing) is what keeps the per-frame cost down.
Other paths get 404, other methods 405, a full house 503.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any, cast

from pydantic import Field, field_validator

from core.attribute_types import StreamPath
from core.config import parse_address
from core.sink import Sink, SinkAttributes, SinkItem
from core.sockets import bind_socket
from runtime.responses import JSON, dump_json

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                         "'()+_,-./:=?")


class MjpegSinkAttributes(SinkAttributes):
    port: int = Field(8081, ge=0, le=65535)
    host: str | None = None  # listen host; default: the processor's --listen-host
    path: StreamPath = "/stream"
    boundary: str = "frame"
    maxClients: int = Field(64, ge=1, alias="max_clients")
    clientQueue: int = Field(2, ge=1, alias="client_queue")  # frames queued per client

    @field_validator("boundary")
    @classmethod
    def _token(cls, value: str) -> str:
        value = value.strip().removeprefix("--")
        if not 1 <= len(value) <= 70 or not set(value) <= _TOKEN_CHARS:
            raise ValueError("expected 1-70 letters, digits or '()+_,-./:=?' (RFC 2046)")
        return value


_MAX_REQUEST = 8192
_REQUEST_TIMEOUT = 10.0  # seconds for a client to send its request line and headers


class _ClientConnection(asyncio.Protocol):
    """One HTTP connection: reads the request, then streams parts until the client goes.

    Parts go straight to the transport; its unsent bytes are this client's queue, so no
    task or wake-up per frame is needed, and a client is behind when they exceed
    ``clientQueue`` frames."""

    def __init__(self, sink: MjpegSink) -> None:
        self.sink = sink
        self.transport: asyncio.Transport | None = None
        self.streaming = False
        self._request = bytearray()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._timer = asyncio.get_running_loop().call_later(_REQUEST_TIMEOUT,
                                                            self.transport.close)

    def data_received(self, data: bytes) -> None:
        if self.streaming or self.transport is None or self.transport.is_closing():
            return  # nothing more to read from a watching client
        self._request += data
        end = self._request.find(b"\r\n\r\n")
        if end < 0:
            if len(self._request) > _MAX_REQUEST:
                self._refuse(431, "request headers too large")
            return
        if self._timer is not None:
            self._timer.cancel()
        line = bytes(self._request[:self._request.find(b"\r\n")])
        self.sink.request(self, line)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.sink.gone(self)

    def respond(self, head: bytes, close: bool) -> None:
        assert self.transport is not None
        self.transport.write(head)
        if close:
            self.transport.close()

    def _refuse(self, status: int, message: str) -> None:
        self.respond(_error(status, message), True)


def _error(status: int, message: str) -> bytes:
    body = dump_json({"error": message})
    reason = HTTPStatus(status).phrase
    return (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {JSON}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body


class MjpegSink(Sink):
    kind = "mjpeg"
    Attributes = MjpegSinkAttributes
    attributes: MjpegSinkAttributes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        attrs = self.attributes
        self._sock: socket.socket | None = None
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[_ClientConnection] = set()
        self._latest: tuple[bytes, bytes, bytes] | None = None  # (part head, body, CRLF)
        self._held: list[tuple[bytes, bytes, bytes]] | None = None  # parts while corked
        self._delimiter = f"--{attrs.boundary}\r\n".encode()
        self._head = ("HTTP/1.1 200 OK\r\n"
                      f"Content-Type: multipart/x-mixed-replace; boundary={attrs.boundary}\r\n"
                      "Cache-Control: no-cache, no-store\r\nPragma: no-cache\r\n"
                      "Connection: close\r\n\r\n").encode()
        self._closing = False
        self.address = ""

    # -- life cycle ----------------------------------------------------------------------------
    def bind(self, default_host: str) -> None:
        attrs = self.attributes
        host = attrs.host or default_host
        yaml_path = f"spec.triggers.{self.name}.attributes.sink.attributes.port"
        address = parse_address(f"{host}:{attrs.port}", yaml_path, host)
        self._sock = bind_socket(address, yaml_path)
        self.address = f"{address.host}:{self._sock.getsockname()[1]}"

    async def start(self) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ClientConnection(self),
                                                sock=self._sock, backlog=128)
        self.logger.info_with("MJPEG sink serving", trigger=self.name, address=self.address,
                              path=self.attributes.path)

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for client in list(self._clients):
            if client.transport is not None:
                client.transport.close()  # after what is already queued
        self._clients.clear()

    def status(self) -> dict[str, Any]:
        return {"address": self.address, "path": self.attributes.path,
                "clients": len(self._clients)}

    # -- frames in --------------------------------------------------------------------------------
    def write(self, item: SinkItem) -> None:
        body = item.body
        head = b"".join((self._delimiter, b"Content-Type: ", item.content_type.encode("latin-1"),
                         b"\r\nContent-Length: ", str(len(body)).encode(), b"\r\n\r\n"))
        # The JPEG itself is never copied: the transports write the three pieces together
        # (uvloop: one writev), and the latest part is kept as those pieces.
        part = (head, body, b"\r\n")
        self._latest = part
        if self._held is not None:
            self._held.append(part)
        else:
            self._send((part,), len(head) + len(body) + 2)

    def cork(self) -> None:
        if self._held is None:
            self._held = []

    def uncork(self) -> None:
        held, self._held = self._held, None
        if held:
            size = sum(len(head) + len(body) + 2 for head, body, _ in held)
            self._send(held, size // len(held))

    def _send(self, parts: Sequence[tuple[bytes, bytes, bytes]], part_size: int) -> None:
        """Writes the parts to every client that is not behind, in one go each."""
        count = len(parts)
        if not self._clients:
            self.metrics.dropped("no_clients", count)
            return
        behind = self.attributes.clientQueue * part_size
        pieces = parts[0] if count == 1 else [piece for part in parts for piece in part]
        sent = 0
        for client in self._clients:
            transport = client.transport
            if transport is None or transport.is_closing():
                continue
            if transport.get_write_buffer_size() > behind:
                self.metrics.dropped("slow_client", count)
                continue
            transport.writelines(pieces)
            sent += count
        if sent:
            self.metrics.sent(sent)

    # -- clients ---------------------------------------------------------------------------------
    def request(self, client: _ClientConnection, line: bytes) -> None:
        """A client's request line arrived: start its stream or refuse it."""
        method, _, rest = line.partition(b" ")
        target = rest.partition(b" ")[0].partition(b"?")[0]
        if not target.startswith(b"/"):
            client.respond(_error(400, "expected an HTTP request line"), True)
        elif target.decode("latin-1") != self.attributes.path:
            client.respond(_error(404, f"no stream here; try {self.attributes.path}"), True)
        elif method not in (b"GET", b"HEAD"):
            client.respond(_error(405, "expected GET"), True)
        elif self._closing or len(self._clients) >= self.attributes.maxClients:
            client.respond(_error(503, "too many clients"), True)
        elif method == b"HEAD":
            client.respond(self._head, True)
        else:
            client.streaming = True
            self._clients.add(client)
            client.respond(self._head, False)
            if self._latest is not None:
                assert client.transport is not None
                client.transport.writelines(self._latest)
                self.metrics.sent()

    def gone(self, client: _ClientConnection) -> None:
        self._clients.discard(client)
