"""The mjpeg trigger: reads an MJPEG-over-HTTP camera and runs the handler on its frames.

One reader task per trigger holds a streaming GET to ``url``; the body goes
through media/multipart.py (which copes with real cameras' quirks and counts
bad parts) and every ``processing_factor``-th frame becomes an event, offered to
media/frame_pipeline.py: frames run in parallel on the pool's workers, reach
the sink in frame order, and are dropped by ``drop_policy`` when the handler is
slower than the camera.

Events: body = the JPEG, content type ``image/jpeg``, method GET, the camera URL
(credentials removed) as url; ``fields``: ``frame_num`` (0-based count of frames
read from the camera, monotonic across reconnects, so with ``processing_factor``
N the handler sees 0, N, 2N, ...), ``url`` and ``timestamp`` (epoch seconds when
the frame's last byte arrived).

Faults: a refused connection, a non-2xx status, an error or a source silent for
``read_timeout`` ends the connection; the reader reconnects after a back-off
starting at ``reconnect_delay`` and doubling up to ``reconnect_max_delay``,
reset once a connection has delivered a frame. A part cut short by a disconnect
is counted as ``truncated``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from pydantic import Field, field_validator, model_validator

from core.attribute_types import Duration, check_delays, checked_url
from core.sink import SinkSpec
from media.frame_pipeline import DropPolicy, FramePipeline
from media.multipart import DEFAULT_MAX_PART, MultipartParser, boundary_from_content_type
from runtime.backoff import Backoff
from runtime.events import RawEvent, new_event_id
from triggers.base import Trigger, TriggerAttributes, public_url

JPEG = "image/jpeg"
_READ_BUFFER = 1 << 18


class MjpegAttributes(TriggerAttributes):
    url: str
    processing_factor: int = Field(1, ge=1)
    sink: SinkSpec | None = None
    headers: dict[str, str] = Field(default_factory=dict)  # e.g. Authorization
    connect_timeout: Duration = Field(5.0, gt=0)
    read_timeout: Duration = Field(5.0, gt=0)  # a source silent this long is reconnected
    reconnect_delay: Duration = Field(1.0, gt=0)  # first back-off step, doubling to the max
    reconnect_max_delay: Duration = Field(5.0, gt=0)
    drop_policy: DropPolicy = "newest"
    max_pending: int = Field(1, ge=0)
    max_frame_bytes: int = Field(DEFAULT_MAX_PART, ge=1024)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return checked_url(value, ("http", "https"),
                           "expected an http:// or https:// URL of an MJPEG stream, such as "
                           "'http://camera:8080/video.mjpg'")

    @model_validator(mode="after")
    def _delays(self) -> MjpegAttributes:
        check_delays(self.reconnect_delay, self.reconnect_max_delay, "reconnect_delay",
                     "reconnect_max_delay")
        return self


class MjpegTrigger(Trigger):
    kind = "mjpeg"
    Attributes = MjpegAttributes
    attributes: MjpegAttributes

    _reader: asyncio.Task[None] | None = None
    pipeline: FramePipeline | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        attrs = self.attributes
        self.public_url = public_url(attrs.url)
        self._path = urlsplit(self.public_url).path or "/"
        self.frames = self.metrics.frames
        self._backoff = Backoff(attrs.reconnect_delay, attrs.reconnect_max_delay)
        self._stop = asyncio.Event()
        self._frames_read = 0
        self._connected = False
        self._last_error: str | None = None
        self._state = "connecting"
        self._since = time.time()

    # -- life cycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        attrs = self.attributes
        self.pipeline = FramePipeline(self, drop_policy=attrs.drop_policy,
                                      max_pending=attrs.max_pending)
        self._reader = asyncio.get_running_loop().create_task(self._read_forever())
        self.logger.info_with("MJPEG trigger reading", trigger=self.name, url=self.public_url,
                              processing_factor=attrs.processing_factor)

    async def stop_accepting(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def close(self) -> None:
        if self.pipeline is not None:
            await self.pipeline.close()

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {"source": {
            "url": self.public_url, "connected": self._connected,
            "frames_read": self._frames_read, "reconnects": self.frames.reconnects,
            "last_error": self._last_error}}
        if self.pipeline is not None:
            details["frames"] = self.pipeline.status()
        return details

    def source_state(self) -> dict[str, Any]:
        return {"state": self._state, "since": round(self._since, 3),
                "last_error": self._last_error, "url": self.public_url}

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state, self._since = state, time.time()

    # -- reading ---------------------------------------------------------------------------------
    async def _read_forever(self) -> None:
        attrs = self.attributes
        timeout = aiohttp.ClientTimeout(total=None, connect=attrs.connect_timeout,
                                        sock_connect=attrs.connect_timeout,
                                        sock_read=attrs.read_timeout)
        async with aiohttp.ClientSession(timeout=timeout, auto_decompress=False,
                                         read_bufsize=_READ_BUFFER) as session:
            while not self._stop.is_set():
                try:
                    await self._read_once(session)
                    reason = "the source ended the stream"
                except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                    reason = _describe(exc)
                self._connected = False
                self._last_error = reason
                if self._stop.is_set():
                    self._set_state("stopped")
                    return
                # The first failure after a working connection is "reconnecting"; once a
                # retry has failed too, the source is "down" until it comes back.
                self._set_state("reconnecting" if self._backoff.attempts == 0 else "down")
                self.frames.reconnects += 1
                self.logger.warn_with("MJPEG source lost; reconnecting", trigger=self.name,
                                      url=self.public_url, reason=reason,
                                      attempt=self._backoff.attempts + 1)
                if await self._backoff.wait(self._stop):
                    return

    async def _read_once(self, session: aiohttp.ClientSession) -> None:
        attrs = self.attributes
        async with session.get(attrs.url, headers=attrs.headers) as response:
            if not 200 <= response.status < 300:
                raise ValueError(f"the source answered HTTP {response.status}")
            content_type = response.headers.get("Content-Type", "")
            parser = MultipartParser(boundary_from_content_type(content_type),
                                     max_part=attrs.max_frame_bytes,
                                     bad=self.frames.dropped_by)
            self._connected = True
            self._set_state("connected")
            self.logger.info_with("MJPEG source connected", trigger=self.name,
                                  url=self.public_url, content_type=content_type)
            try:
                async for chunk in response.content.iter_any():
                    frames = parser.feed(chunk)
                    if frames:
                        self._backoff.reset()
                        await self._frames(frames)
            finally:
                parser.close()

    async def _frames(self, frames: list[bytes]) -> None:
        """The frames one read completed: several when the source outpaces us, handed to
        the pipeline as one burst."""
        captured_at, epoch = time.monotonic(), time.time()
        events = [event for jpeg in frames if (event := self._event(jpeg, epoch)) is not None]
        assert self.pipeline is not None
        await self.pipeline.offer_burst(events, captured_at)

    def _event(self, jpeg: bytes, epoch: float) -> RawEvent | None:
        """The frame's event; None for a frame ``processing_factor`` skips."""
        num = self._frames_read
        self._frames_read = num + 1
        self.frames.read += 1
        if num % self.attributes.processing_factor:
            return None
        return RawEvent(new_event_id(), jpeg, JPEG, {},
                        {"frame_num": num, "url": self.public_url, "timestamp": epoch},
                        "GET", self._path, self.public_url, epoch, self.kind, self.name)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return "no data within the read or connect timeout"
    return str(exc) or type(exc).__name__
