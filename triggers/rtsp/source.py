"""Reads one RTSP source with PyAV on a thread of its own, for as long as it runs.

PyAV (FFmpeg) does the RTSP/RTP client work and the decoding; its calls block,
so they live on a thread, bounded by open and read timeouts (PyAV's interrupt
callback). Only the configured media type is set up (``allowed_media_types``).
A source that cannot be opened, stops sending or ends is reopened after a
back-off delay (runtime/backoff.py) until the trigger stops; a packet that does
not decode is skipped and counted. Decoded frames go to ``on_frame`` on this
thread, with their presentation time mapped to epoch seconds (the first frame
of each connection is "now"; later ones follow the stream's own clock). With
``jpeg_passthrough``, an MJPEG source's packets (whole JPEGs, rebuilt by FFmpeg
with the standard tables) go out as bytes without being decoded at all.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import av

from runtime.backoff import Backoff
from runtime.logger import Logger
from triggers.base import public_url

SourceState = Literal["starting", "connecting", "streaming", "down", "stopped"]
# (frame, or JPEG bytes when passed through; epoch seconds; monotonic time read)
FrameCallback = Callable[[Any, float, float], None]


class RtspReader:
    def __init__(self, url: str, *, media: Literal["video", "audio"],
                 transport: Literal["tcp", "udp"], open_timeout: float, read_timeout: float,
                 backoff: Backoff, on_frame: FrameCallback,
                 on_connect: Callable[[], None], counters: Any, logger: Logger,
                 name: str, jpeg_passthrough: bool = False) -> None:
        self.url = url
        self.public_url = public_url(url)  # no credentials
        self.media = media
        self.transport = transport
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.backoff = backoff
        self.on_frame = on_frame
        self.on_connect = on_connect  # a new connection: per-stream state starts over
        # An MJPEG source's packets are whole JPEGs: hand them over as bytes, undecoded.
        self.jpeg_passthrough = jpeg_passthrough
        self.passing_through = False  # the current connection's JPEGs go out undecoded
        self._time_base: Any = None
        self._origin: tuple[int, float] | None = None  # (first pts, its epoch time)
        # core.metrics.FrameMetrics: ``read`` per decoded frame, ``reconnects`` per outage.
        self.counters = counters
        self.logger = logger
        self.name = name
        self.state: SourceState = "starting"
        self.since = time.time()
        self.last_error: str | None = None
        self.connects = 0
        self.frames = 0
        self.decode_errors = 0
        self.codec: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rtsp-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Asks the thread to end; it notices within ``read_timeout`` at worst."""
        self._stop.set()
        if self._thread.ident is not None:  # never started: start-up failed before it
            self._thread.join(timeout)

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {"url": self.public_url, "state": self.state,
                                   "since": round(self.since, 3), "connects": self.connects,
                                   "frames_read": self.frames,
                                   "decode_errors": self.decode_errors}
        if self.codec:
            details["codec"] = self.codec
        if self.passing_through:
            details["jpeg_passthrough"] = True
        if self.last_error:
            details["last_error"] = self.last_error
        return details

    def _set_state(self, state: SourceState, error: str | None = None) -> None:
        if state == "down" and self.state == "streaming":
            self.counters.reconnects += 1
        if state != self.state:
            self.state = state
            self.since = time.time()
        if error is not None:
            self.last_error = error

    def _options(self) -> dict[str, str]:
        return {"rtsp_transport": self.transport, "allowed_media_types": self.media,
                # Open in well under a second (FFmpeg probes ~2 s of media by default).
                "analyzeduration": "500000", "probesize": "65536", "fflags": "nobuffer",
                "timeout": str(int(self.read_timeout * 1_000_000))}

    def _run(self) -> None:
        while not self._stop.is_set():
            self._set_state("connecting")
            try:
                self._read_once()
            except Exception as exc:  # any failure of this connection: retry later
                if self._stop.is_set():
                    break
                self._set_state("down", f"{type(exc).__name__}: {exc}")
                self.logger.warn_with("RTSP source unavailable; retrying", trigger=self.name,
                                      url=self.public_url, error=self.last_error,
                                      attempt=self.backoff.attempts + 1)
            else:
                if self._stop.is_set():
                    break
                self._set_state("down", "the stream ended")
                self.logger.warn_with("RTSP source ended; reconnecting", trigger=self.name,
                                      url=self.public_url)
            if self._stop.wait(self.backoff.next_delay()):
                break
        self._set_state("stopped")

    def _read_once(self) -> None:
        container = av.open(self.url, options=self._options(),
                            timeout=(self.open_timeout, self.read_timeout))
        try:
            streams = container.streams.video if self.media == "video" \
                else container.streams.audio
            if not streams:
                raise LookupError(f"the source has no {self.media} stream")
            stream = streams[0]
            self.codec = stream.codec_context.name
            self.connects += 1
            self.on_connect()
            self._time_base = stream.time_base
            self._origin = None
            passthrough = self.passing_through = self.jpeg_passthrough and self.codec == "mjpeg"
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return
                if passthrough:  # each packet is a whole JPEG: no decoding needed
                    if packet.size:
                        self._deliver(bytes(packet), packet.pts)
                    continue
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    self.decode_errors += 1
                    continue
                for frame in frames:
                    if isinstance(frame, av.VideoFrame | av.AudioFrame):
                        self._deliver(frame, frame.pts)
        finally:
            container.close()

    def _deliver(self, unit: Any, pts: int | None) -> None:
        captured = time.monotonic()
        now = time.time()
        if pts is None or self._time_base is None:
            epoch = now
        elif self._origin is None:
            self._origin, epoch = (pts, now), now
        else:
            epoch = self._origin[1] + float((pts - self._origin[0]) * self._time_base)
        if self.state != "streaming":
            self._set_state("streaming")
            self.backoff.reset()
            self.logger.info_with("RTSP source streaming", trigger=self.name,
                                  url=self.public_url, codec=self.codec)
        self.frames += 1
        self.counters.read += 1
        self.on_frame(unit, epoch, captured)
