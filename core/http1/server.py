"""The lean HTTP/1.1 server: function calls over HTTP without aiohttp's server.

Why: under load the processor's own process is the bottleneck of the process and
thread kinds, and aiohttp's server was over half of its time (README, Performance).
A function call needs a whole request in and a whole response out: parsing with
httptools in a plain ``asyncio.Protocol`` costs a fraction of that. The http trigger,
the front door and the health/metrics/status listener serve on it (the status page's
event and preview streams as chunked ``StreamReply``), so a function that needs no
aiohttp does not import it (~0.1 s of a cold start); OpenInference REST and the
websocket trigger stay on aiohttp.

Behaviour a client sees, as from aiohttp: keep-alive by default (HTTP/1.0 on
request), pipelined requests answered in order, ``Expect: 100-continue`` answered,
gzip/deflate/br bodies decoded, 400 for what does not parse, idle connections closed
after ``keepalive_timeout`` (75 s, aiohttp's), and on shutdown idle connections
closed at once, busy ones after their answer.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Coroutine
from typing import Any

from core.http1.connection import Connection, Handler
from core.sockets import Listener

KEEPALIVE_TIMEOUT = 75.0
_SWEEP_EVERY = 5.0


class HTTP1Server(Listener):
    loop: asyncio.AbstractEventLoop  # the running loop, from start()

    def __init__(self, handler: Handler, sock: socket.socket, *, max_body: int = 1 << 20,
                 keepalive_timeout: float = KEEPALIVE_TIMEOUT) -> None:
        super().__init__(sock)
        self.handler = handler
        self.max_body = max_body
        self.accepting = True
        self.connections: set[Connection] = set()
        self._keepalive = keepalive_timeout
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(lambda: Connection(self), sock=self._sock,
                                                     backlog=1024)
        self._sweeper = self.loop.call_later(_SWEEP_EVERY, self._sweep)

    def track(self, answer: Coroutine[Any, Any, None]) -> None:
        task = self.loop.create_task(answer)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _sweep(self) -> None:
        deadline = self.loop.time() - self._keepalive
        for connection in list(self.connections):
            if connection.idle_since < deadline:
                connection.close_if_idle()
        self._sweeper = self.loop.call_later(_SWEEP_EVERY, self._sweep)

    async def shutdown(self, timeout: float = 1.0) -> None:
        """Stops listening, closes idle connections, lets answers in progress finish
        (within ``timeout``; then they are cancelled) and closes the rest."""
        self.stop_listening()
        self.accepting = False
        if self._sweeper is not None:
            self._sweeper.cancel()
        for connection in list(self.connections):
            connection.close_if_idle()
        if self._tasks:
            _, late = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in late:
                task.cancel()
        for connection in list(self.connections):
            connection.close()
