"""Video frames as events carry them: JPEG bytes, or raw pixels with their layout.

Raw frames are packed ``bgr24``/``rgb24`` (3 bytes a pixel) or ``gray`` (1 byte),
row after row with no padding, so a handler gets an image with
``np.frombuffer(event.body, np.uint8).reshape(height, width, -1)``; the event's
fields say ``width``, ``height`` and ``format``. The same layout is accepted back
by the rtsp sink. JPEGs are baseline 4:2:0 with the standard Huffman tables,
which is what RTP/JPEG (RFC 2435) players can rebuild.
"""

from __future__ import annotations

import functools
from fractions import Fraction
from typing import Any, Literal

import av

from core.sink import SinkItem
from media.rtp import JpegFrame, UnsupportedMedia

RawFormat = Literal["bgr24", "rgb24", "gray"]
BYTES_PER_PIXEL = {"bgr24": 3, "rgb24": 3, "gray": 1}
JPEG_TYPE = "image/jpeg"
RAW_TYPE = "application/octet-stream"


def quality_to_qscale(quality: int) -> int:
    """JPEG quality 1..100 (higher is better) -> FFmpeg's qscale 31..2."""
    return round(2 + (100 - quality) * 29 / 99)


class JpegEncoder:
    """FFmpeg's MJPEG encoder, reopened when the frame size changes."""

    def __init__(self, quality: int) -> None:
        self.qscale = quality_to_qscale(quality)
        self._ctx: Any = None
        self._size: tuple[int, int] | None = None

    def encode(self, frame: av.VideoFrame) -> bytes:
        width, height = frame.width - frame.width % 2, frame.height - frame.height % 2
        if self._size != (width, height):
            ctx = av.CodecContext.create("mjpeg", "w")
            ctx.width, ctx.height = width, height
            ctx.pix_fmt = "yuvj420p"
            ctx.time_base = Fraction(1, 90000)
            ctx.qmin = ctx.qmax = self.qscale
            ctx.options = {"huffman": "default"}  # RFC 2435 receivers assume these tables
            self._ctx, self._size = ctx, (width, height)
        if frame.format.name != "yuvj420p" or (frame.width, frame.height) != (width, height):
            frame = frame.reformat(width=width, height=height, format="yuvj420p")
        frame.pts = None
        return b"".join(bytes(p) for p in self._ctx.encode(frame))


@functools.cache
def standard_huffman_tables() -> frozenset[bytes]:
    """The JPEG standard's Huffman tables (ITU T.81 Annex K), as FFmpeg writes them with
    ``huffman=default``: what RTP/JPEG receivers assume."""
    import numpy as np

    frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="bgr24")
    return frozenset(JpegFrame(JpegEncoder(80).encode(frame)).huffman)


def raw_bytes(frame: av.VideoFrame, fmt: RawFormat) -> bytes:
    array = frame.to_ndarray(format=fmt)
    return array.tobytes()


class FrameDecoder:
    """A sink item (JPEG, or raw pixels described by its fields) -> ``av.VideoFrame``."""

    def __init__(self) -> None:
        self._jpeg: Any = None

    def decode(self, item: SinkItem) -> av.VideoFrame:
        body = item.body
        if body[:2] == b"\xff\xd8":
            if self._jpeg is None:
                self._jpeg = av.CodecContext.create("mjpeg", "r")
            frames = self._jpeg.decode(av.Packet(body))
            if not frames:
                raise UnsupportedMedia("a JPEG that does not decode")
            frame: av.VideoFrame = frames[0]
            return frame
        fields = item.fields
        fmt, width, height = fields.get("format"), fields.get("width"), fields.get("height")
        if fmt not in BYTES_PER_PIXEL or not isinstance(width, int) \
                or not isinstance(height, int):
            raise UnsupportedMedia("neither a JPEG nor a raw frame with width, height and "
                                   "format (bgr24, rgb24, gray) in its fields")
        if len(body) != width * height * BYTES_PER_PIXEL[fmt]:
            raise UnsupportedMedia("a raw frame whose size does not match width x height")
        import numpy as np

        shape = (height, width, 3) if BYTES_PER_PIXEL[fmt] == 3 else (height, width)
        array = np.frombuffer(body, np.uint8).reshape(shape)
        return av.VideoFrame.from_ndarray(array, format=fmt)
