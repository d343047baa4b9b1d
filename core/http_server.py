"""A minimal aiohttp server on a socket that was bound earlier (OpenInference REST, the
websocket trigger; the http trigger, front door, health, metrics and status page use
core.http1).

aiohttp's low-level ``web.Server`` (no router, no middleware) keeps per-request
overhead down for the servers that need aiohttp (websockets, its request object).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_request import BaseRequest

from core.http_body import BadEncoding, BodyTooLarge
from core.sockets import Listener
from runtime.responses import JSON, dump_json

Handler = Callable[[BaseRequest], Awaitable[web.StreamResponse]]


def json_error(status: int, message: str) -> web.Response:
    """An error in the ``{"error": ...}`` shape every trigger answers with."""
    return web.Response(status=status, body=dump_json({"error": message}),
                        headers={"Content-Type": JSON})


async def read_body(request: BaseRequest, max_size: int) -> bytes:
    """The whole body, decompressed, refusing one over ``max_size`` (declared, chunked or
    decompressed); BadEncoding for one that cannot be decoded."""
    length = request.content_length
    if length is not None and length > max_size:
        raise BodyTooLarge.over(max_size)
    try:
        return await request.read()  # aiohttp decodes gzip/deflate/br, within max_size
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLarge.over(max_size) from None
    except web.RequestPayloadError as exc:  # e.g. a body that is not the gzip it claims
        raise BadEncoding(f"the request body cannot be read: {exc.args[0] if exc.args else exc}"
                          ) from None


class BoundHTTPServer(Listener):
    def __init__(self, handler: Handler, sock: socket.socket, *, client_max_size: int = 1 << 20,
                 **kwargs: Any) -> None:
        super().__init__(sock)
        self._handler = handler
        self._client_max_size = client_max_size
        self._kwargs = kwargs
        self._web_server: web.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        max_size = self._client_max_size

        def make_request(message: Any, payload: Any, protocol: Any, writer: Any,
                         task: Any) -> BaseRequest:
            return BaseRequest(message, payload, protocol, writer, task, loop,
                               client_max_size=max_size)

        self._web_server = web.Server(self._handler, request_factory=make_request,
                                      access_log=None, **self._kwargs)
        self._server = await loop.create_server(self._web_server, sock=self._sock,
                                                backlog=1024)

    async def shutdown(self, timeout: float = 1.0) -> None:
        self.stop_listening()
        if self._web_server is not None:
            await self._web_server.shutdown(timeout)
