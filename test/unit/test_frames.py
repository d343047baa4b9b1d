"""media/frames.py: JPEGs that RTP/JPEG can carry, in full range, and raw frames unpadded."""

from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import ColorRange

from media.frames import JpegEncoder, RawConverter, standard_huffman_tables
from media.rtp import JpegFrame


def _decoded_luma(jpeg: bytes) -> np.ndarray:
    frame = av.CodecContext.create("mjpeg", "r").decode(av.Packet(jpeg))[0]
    return np.frombuffer(frame.planes[0], np.uint8).reshape(frame.height, -1)[:, :frame.width]


def _yuv_frame(luma: int, full_range: bool, width: int = 64, height: int = 48) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    for n, plane in enumerate(frame.planes):
        plane.update(bytes([luma if n == 0 else 128]) * plane.buffer_size)
    frame.color_range = ColorRange.JPEG if full_range else ColorRange.MPEG
    return frame


def test_limited_range_frames_become_full_range_jpegs() -> None:
    black, white = JpegEncoder(90), JpegEncoder(90)
    assert _decoded_luma(black.encode(_yuv_frame(16, full_range=False))).max() <= 2
    assert _decoded_luma(white.encode(_yuv_frame(235, full_range=False))).min() >= 253


def test_full_range_frames_are_encoded_as_they_are() -> None:
    luma = _decoded_luma(JpegEncoder(90).encode(_yuv_frame(16, full_range=True)))
    assert 14 <= luma.min() <= luma.max() <= 18


def test_jpegs_are_baseline_420_with_the_standard_tables_at_any_size() -> None:
    encoder = JpegEncoder(80)
    for width, height in ((1280, 720), (641, 481), (720, 480)):  # odd, and padded chroma rows
        pixels = np.random.default_rng(width).integers(0, 255, (height, width, 3), np.uint8)
        jpeg = JpegFrame(encoder.encode(av.VideoFrame.from_ndarray(pixels, format="bgr24")))
        assert (jpeg.width, jpeg.height) == (width - width % 2, height - height % 2)
        assert jpeg.type == 1  # 4:2:0, no restart markers
        assert standard_huffman_tables().issuperset(jpeg.huffman)


def test_raw_frames_are_packed_rows_even_when_swscale_pads_them() -> None:
    pixels = np.random.default_rng(1).integers(0, 255, (11, 642, 3), np.uint8)
    frame = av.VideoFrame.from_ndarray(pixels, format="bgr24")
    for fmt, channels in (("bgr24", 3), ("rgb24", 3), ("gray", 1)):
        body = RawConverter(fmt).convert(frame)
        assert len(body) == 642 * 11 * channels
    rgb = np.frombuffer(RawConverter("rgb24").convert(frame), np.uint8).reshape(11, 642, 3)
    assert np.array_equal(rgb, pixels[:, :, ::-1])
