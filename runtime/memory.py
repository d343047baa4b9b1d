"""Large buffers (video frames, tensors) reused from the heap instead of fresh mappings.

glibc serves a request above its mmap threshold (128 KB to start with) with a new
mapping and unmaps it on free, so every multi-hundred-kilobyte frame, tensor or body
faults its pages in afresh: ~150 page faults per 600 KB, ~1,300 per 2.7 MB 720p frame,
which cost more CPU than the work done on the data. glibc raises the threshold by
itself after a large free, but not reliably under the mix of sizes and threads of a
processor: measured on a 1x3x224x224 FP32 gRPC inference, 800 page faults a request
against 100 for a bare grpc.aio server. ``keep_large_buffers`` makes blocks up to
32 MB come from the heap and keeps up to 128 MB of free heap for reuse.
"""

from __future__ import annotations

import ctypes

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
_kept = False


def keep_large_buffers() -> None:
    """Once per process, where large buffers are made (raw frames, tensors); a no-op
    without glibc's mallopt."""
    global _kept
    if _kept:
        return
    _kept = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 128 << 20)
