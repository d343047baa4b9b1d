"""The status routes on the health address: the page, ``/api/status``, ``/api/events``
(Server-Sent Events, one document a second) and ``/api/preview/<trigger>``.

Read-only: every route is a GET, nothing changes the processor. The sampler task
(one ``tick`` a second) is the only background work; the document is built when
someone asks for it, once per second at most, and shared by every SSE client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from importlib import resources
from urllib.parse import unquote

from core.http1 import Reply, Request, StreamReply, error_reply, json_reply
from processor.status.document import StatusBuilder
from processor.status.preview import MAX_FPS, Preview, has_frames
from runtime.responses import JSON
from triggers.base import Trigger

_BOUNDARY = "preview"
_NO_CACHE = {"Cache-Control": "no-store"}


def _page() -> bytes:
    return resources.files("processor.status").joinpath("page.html").read_bytes()


class StatusRoutes:
    def __init__(self, builder: StatusBuilder, *, page: bool = True,
                 preview: bool = True) -> None:
        self.builder = builder
        self.preview = Preview()
        self._page = _page() if page else None
        self._preview_on = preview
        self._closing = asyncio.Event()
        self._sampler: asyncio.Task[None] | None = None
        self._cached: tuple[int, bytes] | None = None  # (second, JSON) shared by clients

    # -- life cycle --------------------------------------------------------------------
    def start(self) -> None:
        self.builder.tick()
        self._sampler = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        while not self._closing.is_set():
            await self._pause(1.0)
            self.builder.tick()

    async def _pause(self, seconds: float) -> None:
        """Waits ``seconds``, or less if the routes close meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def close(self) -> None:
        """Ends the sampler and every open stream (so the health server can stop)."""
        self._closing.set()
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler

    # -- routing ---------------------------------------------------------------------------
    async def handle(self, request: Request) -> Reply | None:
        """The response for a status route, or None when the path is not one of them."""
        path = request.path
        if path in ("/", "/dashboard", "/dashboard/"):
            if self._page is None:
                return None
            return Reply(200, self._page, {"Content-Type": "text/html; charset=utf-8",
                                           **_NO_CACHE, "X-Content-Type-Options": "nosniff"})
        if not path.startswith("/api/"):
            return None
        if request.method not in ("GET", "HEAD"):
            return json_reply(405, {"error": "the status API is read-only"}, {"Allow": "GET"})
        if path == "/api/status":
            return Reply(200, self._document(), {"Content-Type": JSON, **_NO_CACHE})
        if path == "/api/events":
            return StreamReply(self._events(), {
                "Content-Type": "text/event-stream", "Cache-Control": "no-store",
                "X-Accel-Buffering": "no"})
        if path.startswith("/api/preview/"):
            return await self._preview(request, unquote(path[len("/api/preview/"):]))
        return None

    def _document(self) -> bytes:
        second = int(time.monotonic())
        if self._cached is None or self._cached[0] != second:
            self._cached = (second, json.dumps(self.builder.document(),
                                               separators=(",", ":")).encode())
        return self._cached[1]

    # -- Server-Sent Events -----------------------------------------------------------------
    async def _events(self) -> AsyncIterator[bytes]:
        # The page reconnects after a restart: ask EventSource to retry every second.
        yield b"retry: 1000\n\n"
        while not self._closing.is_set():
            yield b"data: " + self._document() + b"\n\n"
            await self._pause(1.0)

    # -- preview --------------------------------------------------------------------------------
    def _trigger(self, name: str) -> Trigger | None:
        for r in self.builder.running():
            if r.trigger.name == name:
                return r.trigger
        return None

    async def _preview(self, request: Request, name: str) -> Reply:
        if not self._preview_on:
            return error_reply(404, "the preview is turned off "
                               "(healthCheck.dashboard.preview)")
        trigger = self._trigger(name)
        if trigger is None:
            return error_reply(404, f"no trigger named {name!r}")
        if not has_frames(trigger):
            return error_reply(404, f"trigger {name!r} produces no frames")
        if request.query.get("stream") in ("1", "true"):
            return StreamReply(self._stream(trigger), {
                "Content-Type": f"multipart/x-mixed-replace; boundary={_BOUNDARY}",
                "Cache-Control": "no-store"})
        jpeg = await self.preview.jpeg(trigger)
        if jpeg is None:
            return error_reply(404, "no frame yet")
        return Reply(200, jpeg, {"Content-Type": "image/jpeg", **_NO_CACHE})

    async def _stream(self, trigger: Trigger) -> AsyncIterator[bytes]:
        last: bytes | None = None
        while not self._closing.is_set():
            jpeg = await self.preview.jpeg(trigger)
            if jpeg is not None and jpeg is not last:
                last = jpeg
                yield (b"--" + _BOUNDARY.encode() + b"\r\nContent-Type: image/jpeg\r\n"
                       b"Content-Length: " + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg
                       + b"\r\n")
            await self._pause(1.0 / MAX_FPS)
