"""Video frames as events carry them: JPEG bytes, or raw pixels with their layout.

Raw frames are packed ``bgr24``/``rgb24`` (3 bytes a pixel) or ``gray`` (1 byte),
row after row with no padding, so a handler gets an image with
``np.frombuffer(event.body, np.uint8).reshape(height, width, -1)``; the event's
fields say ``width``, ``height`` and ``format``. The same layout is accepted back
by the rtsp sink. JPEGs are baseline 4:2:0 with the standard Huffman tables,
which is what RTP/JPEG (RFC 2435) players can rebuild.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any, Literal

import av
import simplejpeg
from av.video.reformatter import ColorRange, VideoReformatter

from core.sink import SinkItem
from media.direct_scaler import DirectScaler
from media.rtp import JpegFrame, UnsupportedMedia
from runtime.memory import keep_large_buffers

RawFormat = Literal["bgr24", "rgb24", "gray"]
BYTES_PER_PIXEL = {"bgr24": 3, "rgb24": 3, "gray": 1}
JPEG_TYPE = "image/jpeg"
RAW_TYPE = "application/octet-stream"


class JpegEncoder:
    """libjpeg-turbo (simplejpeg) straight from the frame's YUV 4:2:0 planes.

    Why not FFmpeg's MJPEG encoder: at 720p the encode itself costs about the same,
    but its slice threads, the per-frame swscale set-up of ``frame.reformat`` and the
    RGB round trip cost more CPU than the JPEG; here a frame costs one range conversion
    (limited -> full range, which JPEG means; skipped when the source is already
    full range) and one libjpeg-turbo call, both on this thread, without the GIL.
    libjpeg-turbo writes baseline 4:2:0 with the standard (Annex K) Huffman tables,
    which RTP/JPEG (RFC 2435) receivers assume. ``quality`` is libjpeg's 1..100.
    """

    def __init__(self, quality: int) -> None:
        self.quality = quality
        self._reformatter = VideoReformatter()  # keeps its swscale context between frames

    def encode(self, frame: av.VideoFrame) -> bytes:
        width, height = frame.width - frame.width % 2, frame.height - frame.height % 2
        name = frame.format.name
        full_range = name == "yuvj420p" or (name == "yuv420p"
                                            and frame.color_range == ColorRange.JPEG)
        if not full_range or (frame.width, frame.height) != (width, height):
            frame = self._reformatter.reformat(
                frame, width=width, height=height, format="yuvj420p",
                src_color_range=frame.color_range, threads=1)
        y, u, v = (_plane_array(plane) for plane in frame.planes[:3])
        jpeg: bytes = simplejpeg.encode_jpeg_yuv_planes(y, u, v, self.quality)
        return jpeg


def _plane_array(plane: Any) -> Any:
    """A plane as a 2-D uint8 view (no copy; rows may be padded past the width)."""
    import numpy as np

    rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
    return rows[:, :plane.width]


@functools.cache
def standard_huffman_tables() -> frozenset[bytes]:
    """The JPEG standard's Huffman tables (ITU T.81 Annex K), as our encoder writes them
    (libjpeg-turbo's defaults, the same as FFmpeg's ``huffman=default``): what RTP/JPEG
    receivers assume."""
    import numpy as np

    frame = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="bgr24")
    return frozenset(JpegFrame(JpegEncoder(80).encode(frame)).huffman)


class RawConverter:
    """Decoded frames -> packed raw pixels (``bgr24``/``rgb24``/``gray``), one copy.

    One swscale context kept between frames, on one thread (slice threads cost more
    CPU in hand-offs than they save at camera sizes). ``bgr24``/``rgb24`` are scaled
    straight into the event's bytes (``media.direct_scaler``) wherever that was checked to
    give the same bytes; otherwise the converted plane is copied once into the event's
    bytes (rows unpadded first when swscale padded them). Either way into reused heap
    memory (see ``runtime.memory``).
    """

    def __init__(self, fmt: RawFormat) -> None:
        self.format = fmt
        self._reformatter = VideoReformatter()
        self._direct: DirectScaler | None = None
        self._direct_ok: dict[tuple[Any, ...], bool] = {}  # per frame configuration
        if fmt != "gray":  # gray: swscale's own path differs from PyAV's for some sources
            try:
                self._direct = DirectScaler()
            except (OSError, AttributeError):
                self._direct = None
        keep_large_buffers()

    def convert(self, frame: av.VideoFrame) -> bytes:
        direct = self._direct
        if direct is not None:
            key = (frame.format.name, frame.width, frame.height, frame.colorspace,
                   frame.color_range)
            if key == direct.key or self._use_direct(direct, frame, key):
                return direct.convert(frame, frame.width * BYTES_PER_PIXEL[self.format])
        return self._convert(frame)

    def _convert(self, frame: av.VideoFrame) -> bytes:
        out = self._reformatter.reformat(frame, format=self.format,
                                         src_color_range=frame.color_range, threads=1)
        plane = out.planes[0]
        row = out.width * BYTES_PER_PIXEL[self.format]
        if plane.line_size == row:
            return bytes(plane)
        import numpy as np

        rows = np.frombuffer(memoryview(plane), np.uint8).reshape(out.height, plane.line_size)
        return rows[:, :row].tobytes()

    def _use_direct(self, direct: DirectScaler, frame: av.VideoFrame,
                    key: tuple[Any, ...]) -> bool:
        """Sets ``direct`` up for frames like this one if it gives PyAV's bytes for them:
        checked once per configuration, on a frame of random pixels of the same layout."""
        ok = self._direct_ok.get(key)
        if ok is None:
            import numpy as np

            probe = av.VideoFrame(frame.width, frame.height, frame.format.name)
            rng = np.random.default_rng(0)
            for plane in probe.planes:
                ctypes.memmove(plane.buffer_ptr, rng.bytes(plane.buffer_size),
                               plane.buffer_size)
            probe.colorspace, probe.color_range = frame.colorspace, frame.color_range
            try:
                direct.setup(probe, self.format, key)
                ok = direct.convert(probe, frame.width * BYTES_PER_PIXEL[self.format]) \
                    == self._convert(probe)
            except (ValueError, TypeError, AttributeError, ctypes.ArgumentError):
                ok = False
            self._direct_ok[key] = ok
        if ok:
            direct.setup(frame, self.format, key)
        return ok


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
