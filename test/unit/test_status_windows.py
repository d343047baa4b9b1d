"""The status page's sampled windows and the preview's encode-once rule (no processor)."""

from __future__ import annotations

import asyncio
import types

import numpy as np

from core.metrics import LATENCY_BUCKETS, LatencyHistogram
from core.sink import SinkItem
from processor.status.preview import Preview
from processor.status.windows import CounterWindow, HistogramWindow, quantile


def test_counter_window_rate_covers_only_the_last_seconds() -> None:
    window = CounterWindow(seconds=10)
    for second in range(30):  # 100/s for 20 s, then 10/s
        window.add(float(second), second * 100 if second <= 20 else 2000 + (second - 20) * 10)
    assert window.rate() == 10.0 * 9 / 10 + 100 * 1 / 10
    assert window.last_step() == 10.0
    assert CounterWindow().rate() == 0.0


def test_quantiles_interpolate_inside_buckets_like_histogram_quantile() -> None:
    bounds = (1.0, 2.0, 4.0)
    assert quantile(0.5, bounds, [0, 10, 0, 0]) == 1.5
    assert quantile(0.99, bounds, [50, 50, 0, 0]) == 1.98
    assert quantile(0.99, bounds, [0, 0, 0, 5]) == 4.0  # +Inf: the highest bound known
    assert quantile(0.5, bounds, [0, 0, 0, 0]) is None


def test_histogram_window_forgets_what_is_older_than_the_window() -> None:
    histogram = LatencyHistogram(LATENCY_BUCKETS)
    window = HistogramWindow(histogram.bounds, seconds=3)
    window.add(histogram.counts())
    for _ in range(100):
        histogram.observe(2.0)  # slow, long ago
    window.add(histogram.counts())
    for _ in range(4):
        for _ in range(100):
            histogram.observe(0.0007)
        window.add(histogram.counts())
    p99 = window.percentile(0.99)
    assert p99 is not None and 0.0005 < p99 <= 0.001
    assert window.count() == 300


def _trigger(item: SinkItem | None) -> object:
    return types.SimpleNamespace(name="cam", pipeline=types.SimpleNamespace(latest=item))


def test_raw_frames_are_encoded_once_per_new_frame_and_jpegs_never() -> None:
    async def scenario() -> None:
        preview = Preview()
        raw = np.zeros((48, 64, 3), np.uint8)
        raw[:, :32] = 255
        trigger = _trigger(SinkItem(raw.tobytes(), "application/octet-stream",
                                    {"width": 64, "height": 48, "format": "bgr24"}))
        first = await preview.jpeg(trigger)  # type: ignore[arg-type]
        assert first is not None and first[:2] == b"\xff\xd8"
        for _ in range(20):  # the stream polls 10 times a second: same frame, no encode
            assert await preview.jpeg(trigger) is first  # type: ignore[arg-type]
        assert preview.encodes == 1
        trigger.pipeline.latest = SinkItem(raw.tobytes(), "application/octet-stream",  # type: ignore[attr-defined]
                                           {"width": 64, "height": 48, "format": "bgr24"})
        assert await preview.jpeg(trigger) is not first  # type: ignore[arg-type]
        assert preview.encodes == 2
        jpeg = SinkItem(first, "image/jpeg", {})
        trigger.pipeline.latest = jpeg  # type: ignore[attr-defined]
        assert await preview.jpeg(trigger) is first  # type: ignore[arg-type]
        assert preview.encodes == 2
        trigger.pipeline.latest = SinkItem(b"\x00\x01" * 100, "audio/L16", {})  # type: ignore[attr-defined]
        assert await preview.jpeg(trigger) is None  # type: ignore[arg-type]
        assert await preview.jpeg(_trigger(None)) is None  # type: ignore[arg-type]

    asyncio.run(scenario())


def test_credentials_are_removed_from_urls_anywhere_in_the_document() -> None:
    from processor.status.document import clean_urls

    doc = {"source": {"url": "rtsp://cam:pw@10.0.0.5:554/live",
                      "last_error": "Error opening rtsp://cam:pw@10.0.0.5:554/live: refused"},
           "sinks": [{"url": "http://u@hook/in"}, "ws://h/x?q=a@b", "me@example.org"]}
    assert clean_urls(doc) == {
        "source": {"url": "rtsp://10.0.0.5:554/live",
                   "last_error": "Error opening rtsp://10.0.0.5:554/live: refused"},
        "sinks": [{"url": "http://hook/in"}, "ws://h/x?q=a@b", "me@example.org"]}
