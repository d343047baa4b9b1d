"""The preview: the newest frame a trigger's pipeline handed to its sink, as a JPEG.

JPEG results are served as they are. Raw results (``output: raw``) are encoded when a
preview is asked for and the frame is new since the last encode: at most once per
preview tick (the stream polls at <= 10 fps) whatever the camera's rate, in a thread
(``run_in_executor``) so the event loop never waits for the encoder, and never for
frames nobody looks at. The pipeline only keeps a reference to its latest item.
"""

from __future__ import annotations

import asyncio
from typing import Any

from core.sink import SinkItem
from triggers.base import Trigger

PREVIEW_QUALITY = 75
MAX_FPS = 10


def latest_item(trigger: Trigger) -> SinkItem | None:
    pipeline = getattr(trigger, "pipeline", None)
    return getattr(pipeline, "latest", None)


def has_frames(trigger: Trigger) -> bool:
    return trigger.metrics.frames_if_any is not None


class _Encoder:
    """One trigger's raw-frame encoder and its last result (encodes never overlap)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.item: SinkItem | None = None
        self.jpeg: bytes | None = None
        self._decoder: Any = None
        self._encoder: Any = None

    def encode(self, item: SinkItem) -> bytes | None:
        from media.frames import FrameDecoder, JpegEncoder  # PyAV: only once raw is seen
        from media.rtp import UnsupportedMedia

        if self._decoder is None:
            self._decoder, self._encoder = FrameDecoder(), JpegEncoder(PREVIEW_QUALITY)
        try:
            frame = self._decoder.decode(item)
        except UnsupportedMedia:
            return None  # e.g. audio chunks: nothing to show
        jpeg: bytes = self._encoder.encode(frame)
        return jpeg


class Preview:
    def __init__(self) -> None:
        self._encoders: dict[str, _Encoder] = {}
        self.encodes = 0  # raw frames encoded so far (the tests check "once per tick")

    async def jpeg(self, trigger: Trigger) -> bytes | None:
        """The newest frame as JPEG bytes; None when the trigger has produced none."""
        item = latest_item(trigger)
        if item is None:
            return None
        if item.body[:2] == b"\xff\xd8":
            return item.body
        encoder = self._encoders.get(trigger.name)
        if encoder is None:
            encoder = self._encoders[trigger.name] = _Encoder()
        async with encoder.lock:
            if encoder.item is not item:
                loop = asyncio.get_running_loop()
                encoder.jpeg = await loop.run_in_executor(None, encoder.encode, item)
                encoder.item = item
                self.encodes += 1
            return encoder.jpeg
