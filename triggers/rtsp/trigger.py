"""The rtsp trigger: frames or audio chunks from an RTSP camera/server become events.

Video (H264, H265, MJPEG: whatever PyAV decodes): each emitted frame is an event
whose body is a JPEG (``output: jpeg``, quality ``jpeg_quality``) or raw pixels
(``output: raw``; layout in media/frames.py). An MJPEG source's JPEGs
are passed on as they are with ``output: jpeg``: no decoding, no re-encoding. Pacing, one of:

- ``processing_factor: N``: every Nth decoded frame (1: all of them);
- ``processing_interval: MS`` (the seed's behaviour): the first frame at or
  after each tick of a grid MS milliseconds apart on the stream's clock; frames
  in between are decoded (H264 needs them) but never encoded or sent.

Audio (L16 or anything PyAV decodes): resampled to ``sample_rate``/``channels``
s16le PCM and cut into events by media/audio_chunks.py (``chunk_mode``
``sliding``, the seed's, or ``consecutive``).

Fields: ``frame_num`` (0-based count of decoded frames, or of audio chunks, since
the trigger started, as the mjpeg trigger counts), ``timestamp`` (epoch seconds
from the stream's clock), ``url`` (credentials removed) and ``width``/``height``
(+ ``format`` for raw) or ``sample_rate``/``channels``. Events go through
media/frame_pipeline.py: in order to the sink, dropped by ``drop_policy``
when the workers are behind, counted in ``nuclio_processor_frames_*``.
The source's state is in ``/ready``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, Literal

from pydantic import Field, model_validator

from core.attribute_types import Duration
from core.sink import SinkSpec
from media.audio_chunks import AudioChunker, ChunkMode
from media.frame_pipeline import DropPolicy, FramePipeline
from media.frames import JPEG_TYPE, RAW_TYPE, JpegEncoder, RawConverter, RawFormat
from media.rtp import JpegFrame, UnsupportedMedia
from runtime.backoff import Backoff
from runtime.events import RawEvent, new_event_id
from triggers.base import Trigger, TriggerAttributes
from triggers.rtsp.source import RtspReader

SEED_AUDIO_INTERVAL_MS = 2000
MAX_HANDOFFS = 8  # events posted to the event loop and not yet taken
PCM_TYPE = "audio/L16"  # the body is s16le whatever the wire format was; see fields
_LAYOUTS = {1: "mono", 2: "stereo"}


class RtspAttributes(TriggerAttributes):
    url: str | None = None
    rtsp_url: str | None = None  # the seed system's spelling
    media_type: Literal["video", "audio"] = "video"
    transport: Literal["tcp", "udp"] = "tcp"
    sink: SinkSpec | None = None
    # Go durations ("5s", "500ms") or seconds.
    connect_timeout: Duration = Field(5.0, gt=0)
    read_timeout: Duration = Field(5.0, gt=0)
    reconnect_delay: Duration = Field(1.0, gt=0)  # first back-off step, doubling to the max
    reconnect_max_delay: Duration = Field(10.0, gt=0)
    drop_policy: DropPolicy = "newest"
    max_pending: int = Field(1, ge=0)
    # video
    output: Literal["jpeg", "raw"] = "jpeg"
    jpeg_quality: int = Field(80, ge=1, le=100)
    raw_format: RawFormat = "bgr24"
    processing_factor: int = Field(1, ge=1)
    processing_interval: float | None = Field(None, gt=0)  # milliseconds
    # audio
    sample_rate: int = Field(16000, ge=1000, le=192000)
    channels: Literal[1, 2] = 1
    chunk_mode: ChunkMode = "sliding"
    chunk_bytes: int = Field(160_000, ge=2)
    max_bytes: int = Field(1_440_000, ge=2)
    trim_bytes: int = Field(1_120_000, ge=2)

    @model_validator(mode="after")
    def _consistent(self) -> RtspAttributes:
        if self.url and self.rtsp_url and self.url != self.rtsp_url:
            raise ValueError("give either url or rtsp_url, not both")
        self.url = self.url or self.rtsp_url
        if not self.url:
            raise ValueError("url is required (rtsp://host:port/path)")
        if not self.url.startswith(("rtsp://", "rtsps://")):
            raise ValueError("url: expected rtsp://host[:port]/path")
        if self.reconnect_max_delay < self.reconnect_delay:
            raise ValueError("expected reconnect_delay <= reconnect_max_delay")
        if self.media_type == "video":
            if self.processing_interval is not None and self.processing_factor != 1:
                raise ValueError("give processing_factor or processing_interval, not both")
        else:
            if self.chunk_mode == "sliding":
                if self.processing_interval is None:
                    self.processing_interval = SEED_AUDIO_INTERVAL_MS
                if not self.trim_bytes <= self.max_bytes or not self.chunk_bytes <= self.max_bytes:
                    raise ValueError("expected chunk_bytes <= max_bytes and "
                                     "trim_bytes <= max_bytes")
            if self.chunk_bytes % (2 * self.channels):
                raise ValueError("chunk_bytes must hold whole samples (a multiple of "
                                 "2 x channels)")
        return self


class RtspTrigger(Trigger):
    kind = "rtsp"
    Attributes = RtspAttributes
    attributes: RtspAttributes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        attrs = self.attributes
        assert attrs.url is not None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.pipeline: FramePipeline | None = None
        self._emitted = 0  # frame_num of audio chunks
        # Events handed from the reader thread to the loop, and taken by it: one writer each,
        # so their difference is safe to read from the reader thread without a lock.
        self._handed = 0
        self._taken = 0
        self._busy_drops = 0  # written by the reader thread
        self._busy_counted = 0  # written by the loop
        self._next_emit: float | None = None  # interval pacing, in stream epoch seconds
        self._interval = (attrs.processing_interval or 0) / 1000.0
        self._jpeg = JpegEncoder(attrs.jpeg_quality)
        self._raw = RawConverter(attrs.raw_format) if attrs.output == "raw" else None
        self._chunker: AudioChunker | None = None
        self._resampler: Any = None
        self._audio_origin = 0.0  # epoch of the current connection's first audio sample
        self._pcm_rate = attrs.sample_rate * 2 * attrs.channels  # bytes per second
        self.reader = RtspReader(
            attrs.url, media=attrs.media_type, transport=attrs.transport,
            open_timeout=attrs.connect_timeout, read_timeout=attrs.read_timeout,
            backoff=Backoff(attrs.reconnect_delay, attrs.reconnect_max_delay),
            on_frame=self._on_video if attrs.media_type == "video" else self._on_audio,
            on_connect=self._on_connect, counters=self.metrics.frames, logger=self.logger,
            name=self.name, jpeg_passthrough=attrs.output == "jpeg")
        self._fields_base = {"url": self.reader.public_url}

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.pipeline = FramePipeline(self, drop_policy=self.attributes.drop_policy,
                                      max_pending=self.attributes.max_pending)
        self.reader.start()
        self.logger.info_with("RTSP trigger reading", trigger=self.name,
                              url=self.reader.public_url, media=self.attributes.media_type)

    async def stop_accepting(self) -> None:
        await asyncio.get_running_loop().run_in_executor(
            None, self.reader.stop, self.attributes.read_timeout + 1.0)

    async def close(self) -> None:
        if self.pipeline is not None:
            await self.pipeline.close()

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {"source": self.reader.status()}
        if self.pipeline is not None:
            details["frames"] = self.pipeline.status()
        return details

    # -- on the reader thread ----------------------------------------------------------------
    def source_state(self) -> dict[str, Any]:
        reader = self.reader
        state = {"streaming": "connected", "down": "down", "stopped": "stopped"}.get(
            reader.state, "reconnecting" if reader.connects else "connecting")
        return {"state": state, "since": round(reader.since, 3),
                "last_error": reader.last_error, "url": reader.public_url}

    def _on_connect(self) -> None:
        attrs = self.attributes
        self._next_emit = None
        if attrs.media_type == "audio":
            import av

            self._resampler = av.AudioResampler(format="s16", layout=_LAYOUTS[attrs.channels],
                                                rate=attrs.sample_rate)
            self._chunker = AudioChunker(
                attrs.chunk_mode, chunk_bytes=attrs.chunk_bytes, max_bytes=attrs.max_bytes,
                trim_bytes=attrs.trim_bytes,
                interval_bytes=int(self._interval * self._pcm_rate) // 2 * 2)
            self._audio_origin = 0.0

    def _on_video(self, frame: Any, epoch: float, captured: float) -> None:
        attrs = self.attributes
        num = self.reader.frames - 1  # 0-based, as the mjpeg trigger counts
        if self._interval:
            tick = self._next_emit
            if tick is not None and epoch < tick:
                return
            # Ticks on the stream's clock, one interval apart (so the rate is one frame per
            # interval on average); after a stall the grid restarts instead of bursting.
            tick = (epoch if tick is None else tick) + self._interval
            self._next_emit = tick if tick > epoch else epoch + self._interval
        elif num % attrs.processing_factor:
            return
        if self._loop_behind():
            return
        if isinstance(frame, bytes):  # an MJPEG source's own JPEG, passed through
            try:
                jpeg = JpegFrame(frame)
            except UnsupportedMedia:
                self.reader.decode_errors += 1
                return
            fields = {**self._fields_base, "frame_num": num, "timestamp": epoch,
                      "width": jpeg.width, "height": jpeg.height}
            self._submit(frame, JPEG_TYPE, fields, epoch, captured)
            return
        fields = {**self._fields_base, "frame_num": num, "timestamp": epoch,
                  "width": frame.width, "height": frame.height}
        try:
            if attrs.output == "jpeg":
                body, content_type = self._jpeg.encode(frame), JPEG_TYPE
            else:
                assert self._raw is not None
                body, content_type = self._raw.convert(frame), RAW_TYPE
                fields["format"] = attrs.raw_format
        except Exception as exc:  # an odd frame (size, format) costs that frame only
            self.reader.decode_errors += 1
            self.logger.warn_with("Frame conversion failed", trigger=self.name,
                                  error=repr(exc))
            return
        self._submit(body, content_type, fields, epoch, captured)

    def _on_audio(self, frame: Any, epoch: float, captured: float) -> None:
        assert self._resampler is not None and self._chunker is not None
        chunker = self._chunker
        if chunker.total == 0:
            self._audio_origin = epoch
        try:
            pcm = b"".join(out.to_ndarray().tobytes() for out in self._resampler.resample(frame))
        except Exception as exc:
            self.reader.decode_errors += 1
            self.logger.warn_with("Audio conversion failed", trigger=self.name, error=repr(exc))
            return
        attrs = self.attributes
        for chunk in chunker.feed(pcm):
            start = self._audio_origin + chunk.offset / self._pcm_rate
            fields = {**self._fields_base, "frame_num": self._emitted, "timestamp": start,
                      "sample_rate": attrs.sample_rate, "channels": attrs.channels}
            self._emitted += 1
            self._submit(chunk.pcm, PCM_TYPE, fields, start, captured)

    def _loop_behind(self) -> bool:
        """True (and counted) when the event loop has not yet taken MAX_HANDOFFS earlier
        events: the hand-over between the threads stays bounded, and a frame that would
        wait is not even converted."""
        if self._handed - self._taken < MAX_HANDOFFS:
            return False
        self._busy_drops += 1  # counted into the metrics on the loop (see _offer)
        return True

    def _submit(self, body: bytes, content_type: str, fields: dict[str, Any], epoch: float,
                captured: float) -> None:
        if content_type == PCM_TYPE and self._loop_behind():
            return
        self._handed += 1
        event = RawEvent(new_event_id(), body, content_type, {}, fields, "POST", "/",
                         self.reader.public_url, epoch, self.kind, self.name)
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.call_soon_threadsafe(self._offer, event, captured)

    def _offer(self, event: RawEvent, captured: float) -> None:
        self._taken += 1
        busy = self._busy_drops - self._busy_counted
        if busy:
            self._busy_counted += busy
            self.metrics.frames.dropped("loop_busy", busy)
        if self.pipeline is not None:
            self.pipeline.offer(event, captured)

