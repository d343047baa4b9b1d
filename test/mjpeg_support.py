"""MJPEG peers for tests and the benchmark: a real ffmpeg source, a misbehaving camera of
our own, real JPEGs, and readers of an MJPEG stream (no pytest imports here)."""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import aiohttp
import av
import numpy as np
from aiohttp import web

from media.multipart import MultipartParser, boundary_from_content_type
from test.support import free_port


def encode_jpegs(count: int, width: int = 64, height: int = 48, quality: int = 5
                 ) -> list[bytes]:
    """Real, distinct JPEGs (a moving gradient with some noise), made with PyAV."""
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuvj420p"
    ctx.time_base = fractions.Fraction(1, 30)
    ctx.options = {"qscale": str(quality)}
    ctx.open()
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    out: list[bytes] = []
    for i in range(count):
        base = (ramp + i * 9) % 256
        img = np.broadcast_to(base, (height, width, 3)).astype(np.uint8).copy()
        img += rng.integers(0, 16, img.shape, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuvj420p")
        out.extend(bytes(packet) for packet in ctx.encode(frame))
    out.extend(bytes(packet) for packet in ctx.encode(None))
    assert len(out) == count and all(j[:2] == b"\xff\xd8" for j in out)
    return out


# -- a real camera: ffmpeg ---------------------------------------------------------------------
class FfmpegMjpegSource:
    """``ffmpeg -f lavfi -i testsrc ... -f mpjpeg -listen 1``, restarted after each client
    (``-listen 1`` serves one client, then exits), so a reconnecting reader finds it again."""

    def __init__(self, port: int, *, size: str = "320x240", rate: int = 10,
                 content_type: bool = True) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/stream.mjpg"
        self.command = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi",
                        "-i", f"testsrc=size={size}:rate={rate}", "-c:v", "mjpeg",
                        "-pix_fmt", "yuvj420p", "-q:v", "5", "-f", "mpjpeg"]
        if content_type:
            self.command += ["-boundary_tag", "ffmpeg", "-content_type",
                             "multipart/x-mixed-replace;boundary=ffmpeg"]
        self.command += ["-listen", "1", self.url]
        self.started = 0  # ffmpeg processes started so far
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> FfmpegMjpegSource:
        """Starts serving without probing the port: when a reader is already retrying, it
        may take ffmpeg's one client first, and then nothing else can connect."""
        self._thread.start()
        return self

    def __enter__(self) -> FfmpegMjpegSource:
        self.start()
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self.disconnect()
        self._thread.join(10)

    def _serve(self) -> None:
        while not self._stopped.is_set():
            with self._lock:
                self._proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL)
                self.started += 1
            self._proc.wait()

    def disconnect(self) -> None:
        """Kills the running ffmpeg (the reader sees the camera vanish); another starts."""
        with self._lock:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
                self._proc.wait()


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


# -- a camera that misbehaves on purpose ----------------------------------------------------------
def part(jpeg: bytes, *, boundary: bytes = b"frame", length: bool = True, eol: bytes = b"\r\n",
         header_case: str = "Content-Type") -> bytes:
    headers = [f"{header_case}: image/jpeg".encode()]
    if length:
        headers.append(b"content-LENGTH: " + str(len(jpeg)).encode())
    return b"--" + boundary + eol + eol.join(headers) + eol + eol + jpeg + eol


class ThreadedServer:
    """An aiohttp app served from a thread of its own, so that synchronous tests can run
    it beside the processor. Subclasses add routes in ``setup``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def setup(self, app: web.Application) -> None:
        raise NotImplementedError

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise AssertionError(f"{type(self).__name__} did not start")

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        app = web.Application()
        self.setup(app)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
        loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        loop.run_until_complete(site.start())
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


class ScriptedCamera(ThreadedServer):
    """A camera playing a script of byte chunks and pauses; the test picks the
    misbehaviour by path:

    - ``/quirky``: quoted ``--``-prefixed boundary, odd header case, parts with and without
      Content-Length, ``\\n`` line ends, garbage, a truncated and a non-JPEG part;
    - ``/cut?after=N``: N good frames, then half a frame and a hard disconnect (every
      connection: frames keep counting across reconnects);
    - ``/stall?after=N``: N good frames, then silence until the client gives up;
    - ``/stream?fps=F``: good frames forever at F fps (``fps=0``: as fast as possible);
    - ``/burst?every=S``: every frame of the script in one write, every S seconds (a camera
      that sends what it buffered while the network stalled).
    """

    def __init__(self, port: int, jpegs: list[bytes]) -> None:
        super().__init__(port)
        self.jpegs = jpegs
        self.connections: dict[str, int] = {}
        self.sent: dict[str, int] = {}  # good frames sent, per path
        self.authorization: list[str | None] = []  # per connection

    def setup(self, app: web.Application) -> None:
        for path, script in (("/quirky", self._quirky), ("/cut", self._cut),
                             ("/stall", self._stall), ("/stream", self._stream),
                             ("/burst", self._burst)):
            app.router.add_get(path, self._route(path, script))

    def _route(self, path: str, script: Callable[[web.StreamResponse, web.Request],
                                                 Coroutine[Any, Any, None]]) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.connections[path] = self.connections.get(path, 0) + 1
            self.authorization.append(request.headers.get("Authorization"))
            response = web.StreamResponse()
            boundary = 'Boundary="--frame"' if path == "/quirky" else "boundary=frame"
            response.headers["Content-Type"] = f"multipart/x-mixed-replace; {boundary}"
            await response.prepare(request)
            with contextlib.suppress(ConnectionError):
                await script(response, request)
            return response
        return handle

    def _count(self, path: str) -> None:
        self.sent[path] = self.sent.get(path, 0) + 1

    async def _quirky(self, response: web.StreamResponse, request: web.Request) -> None:
        j = self.jpegs
        chunks = [
            b"\r\n",  # a blank preamble
            part(j[0], header_case="CONTENT-TYPE"),
            part(j[1], length=False),
            b"some garbage a camera left here\r\n",
            part(j[2], eol=b"\n", length=False),
            part(j[3][: len(j[3]) // 2], length=False),  # truncated: no end of image
            part(j[4], boundary=b"--frame"),  # ----frame: more dashes
            part(b"not a jpeg at all", length=True),
            part(j[5] + b"\x00\x00", length=True),  # padded after its end of image
            # A Content-Length that lies (too short): the JPEG's structure decides.
            part(j[6]).replace(f"content-LENGTH: {len(j[6])}".encode(),
                               f"content-LENGTH: {len(j[6]) - 10}".encode()),
        ]
        good = {1, 2, 3, 5, 7, 9}  # chunks that are whole, valid frames
        for index, chunk in enumerate(chunks):
            # Split every chunk in two reads, to cross read boundaries everywhere.
            half = len(chunk) // 2
            await response.write(chunk[:half])
            await asyncio.sleep(0.01)
            await response.write(chunk[half:])
            if index in good:
                self._count("/quirky")
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        await response.write(b"--frame--\r\n")

    async def _cut(self, response: web.StreamResponse, request: web.Request) -> None:
        after = int(request.query.get("after", "5"))
        for i in range(after):
            await response.write(part(self.jpegs[i % len(self.jpegs)]))
            self._count("/cut")
            await asyncio.sleep(0.05)
        await response.write(part(self.jpegs[0])[:200])
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.abort()  # mid-frame, no chunked terminator

    async def _stall(self, response: web.StreamResponse, request: web.Request) -> None:
        after = int(request.query.get("after", "5"))
        for i in range(after):
            await response.write(part(self.jpegs[i % len(self.jpegs)]))
            self._count("/stall")
            await asyncio.sleep(0.05)
        await asyncio.sleep(3600)

    async def _stream(self, response: web.StreamResponse, request: web.Request) -> None:
        fps = float(request.query.get("fps", "0"))
        parts = [part(j) for j in self.jpegs]
        start = time.monotonic()
        i = 0
        while True:
            await response.write(parts[i % len(parts)])
            self._count("/stream")
            i += 1
            if fps:
                await asyncio.sleep(max(0.0, start + i / fps - time.monotonic()))

    async def _burst(self, response: web.StreamResponse, request: web.Request) -> None:
        every = float(request.query.get("every", "0.5"))
        burst = b"".join(part(j) for j in self.jpegs)
        while True:
            await response.write(burst)
            self.sent["/burst"] = self.sent.get("/burst", 0) + len(self.jpegs)
            await asyncio.sleep(every)


# -- reading an MJPEG stream (ours, for instance) ------------------------------------------------
async def read_mjpeg(url: str, *, read_timeout: float = 10.0
                     ) -> AsyncIterator[tuple[float, bytes]]:
    """Yields (monotonic arrival time, JPEG) for each part of a multipart stream."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=read_timeout)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        assert response.status == 200, response.status
        parser = MultipartParser(boundary_from_content_type(
            response.headers.get("Content-Type", "")))
        async for chunk in response.content.iter_any():
            now = time.monotonic()
            for jpeg in parser.feed(chunk):
                yield now, jpeg


# -- a webhook receiver that fails on purpose ----------------------------------------------------
class WebhookReceiver(ThreadedServer):
    """Records every request (one JSON line per request in ``path``). The first
    ``fail_first`` attempts for each frame_num get 503; frames whose number is a multiple
    of ``always_fail`` (when set) always get 503."""

    def __init__(self, out: Any, port: int | None = None, *, fail_first: int = 0,
                 always_fail: int = 0) -> None:
        super().__init__(port or free_port())
        self.out = out
        self.fail_first = fail_first
        self.always_fail = always_fail
        self.attempts: dict[str, int] = {}

    def setup(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self._receive)

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        num = request.headers.get("X-Nuclio-Frame-Num", "")
        attempt = self.attempts[num] = self.attempts.get(num, 0) + 1
        failing = attempt <= self.fail_first or (
            self.always_fail and num.isdigit() and int(num) % self.always_fail == 0)
        status = 503 if failing else 200
        record: dict[str, Any] = {
            "method": request.method, "path": request.path, "attempt": attempt,
            "status": status, "headers": dict(request.headers),
            "body": body.decode("utf-8", "replace")}
        if not failing:
            record.update(json.loads(body) if request.content_type == "application/json"
                          else {})
        with open(self.out, "a") as out:
            out.write(json.dumps(record) + "\n")
        return web.Response(status=status)
