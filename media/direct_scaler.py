"""libswscale called through ctypes, converting a decoded frame straight into a new
``bytes`` object: a raw frame's event body without the copy out of a PyAV frame.

PyAV's reformatter always allocates a new frame, so its path is swscale into that
frame, then a 2.7 MB copy into the body at 720p (~0.3 ms a frame). Here swscale
writes into a ``bytes`` object made with ``PyBytes_FromStringAndSize(NULL, n)`` and
filled before anything else can see it. Only ``media.frames.RawConverter`` uses it,
and only for frame layouts on which it was checked to give PyAV's exact bytes.
"""

from __future__ import annotations

import ctypes
from typing import Any

import av
from av.video.reformatter import ColorRange


def _bytes_data_offset() -> int:
    """Where a ``bytes`` object's data starts, from its address: CPython keeps it at the
    end of the fixed part (``ob_sval``). Checked on a known object, so a build where
    that does not hold refuses the direct path instead of writing to the wrong place."""
    offset = bytes.__basicsize__ - 1
    probe = bytes(range(256)) * 2
    if ctypes.string_at(id(probe) + offset, len(probe)) != probe:
        raise OSError("bytes objects are not laid out as expected")
    return offset


class DirectScaler:
    """One swscale context over PyAV's bundled libswscale and libavutil (found next to
    the ``av`` package; OSError when they or the expected ``bytes`` layout are not
    there, and the caller keeps PyAV's path). ``sws_scale`` runs without the GIL
    (ctypes releases it), as PyAV's own call does."""

    _SWS_BILINEAR = 2  # PyAV's default interpolation

    def __init__(self) -> None:
        import glob
        import os

        libs = os.path.join(os.path.dirname(av.__file__), os.pardir, "av.libs")
        found = [sorted(glob.glob(os.path.join(libs, f"lib{name}-*.so*")))
                 for name in ("swscale", "avutil")]
        if not all(found):
            raise OSError("PyAV's bundled FFmpeg libraries were not found")
        sws, avutil = ctypes.CDLL(found[0][0]), ctypes.CDLL(found[1][0])
        ptr, int_ = ctypes.c_void_p, ctypes.c_int
        self._pix_fmt = avutil.av_get_pix_fmt
        self._pix_fmt.argtypes, self._pix_fmt.restype = [ctypes.c_char_p], int_
        self._context = sws.sws_getCachedContext
        self._context.argtypes = [ptr, *[int_] * 7, ptr, ptr, ptr]
        self._context.restype = ptr
        self._coefficients = sws.sws_getCoefficients
        self._coefficients.argtypes, self._coefficients.restype = [int_], ptr
        self._details = sws.sws_setColorspaceDetails
        self._details.argtypes = [ptr, ptr, int_, ptr, int_, int_, int_, int_]
        self._scale = sws.sws_scale
        self._scale.argtypes = [ptr, ptr, ptr, int_, int_, ptr, ptr]
        self._scale.restype = int_
        self._free = sws.sws_freeContext
        self._free.argtypes = [ptr]
        self._new_bytes = ctypes.pythonapi.PyBytes_FromStringAndSize
        self._new_bytes.argtypes = [ctypes.c_void_p, ctypes.c_ssize_t]
        self._new_bytes.restype = ctypes.py_object
        self._data_offset = _bytes_data_offset()
        self._ctx: int | None = None
        self.key: tuple[Any, ...] | None = None  # the configuration set up last

    def __del__(self) -> None:
        if self._ctx:
            self._free(self._ctx)

    def setup(self, frame: av.VideoFrame, fmt: str, key: tuple[Any, ...]) -> None:
        """Configures the context for frames like ``frame`` (``key`` says which)."""
        src_range = 1 if frame.color_range == ColorRange.JPEG \
            or frame.format.name.startswith("yuvj") else 0
        src_fmt = self._pix_fmt(frame.format.name.encode())
        dst_fmt = self._pix_fmt(fmt.encode())
        if src_fmt < 0 or dst_fmt < 0:
            raise ValueError("unknown pixel format")
        self._ctx = self._context(self._ctx, frame.width, frame.height, src_fmt, frame.width,
                                  frame.height, dst_fmt, self._SWS_BILINEAR, None, None, None)
        if not self._ctx:
            raise ValueError("swscale has no conversion for these formats")
        coefficients = self._coefficients(int(frame.colorspace))
        self._details(self._ctx, coefficients, src_range, coefficients, 1, 0, 1 << 16,
                      1 << 16)
        self.key = key

    def convert(self, frame: av.VideoFrame, row: int) -> bytes:
        planes = frame.planes
        count = len(planes)
        src = (ctypes.c_void_p * 4)(*[p.buffer_ptr for p in planes], *[None] * (4 - count))
        strides = (ctypes.c_int * 4)(*[p.line_size for p in planes], *[0] * (4 - count))
        height = frame.height
        out: bytes = self._new_bytes(None, row * height)  # filled below, before anyone sees it
        dst = (ctypes.c_void_p * 4)(id(out) + self._data_offset, None, None, None)
        if self._scale(self._ctx, src, strides, 0, height, dst,
                       (ctypes.c_int * 4)(row, 0, 0, 0)) != height:
            raise ValueError("sws_scale did not convert the whole frame")
        return out
