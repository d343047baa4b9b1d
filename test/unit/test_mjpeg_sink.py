"""The mjpeg sink's corking, on a recording transport: frames written while corked leave
in one write per client when uncorked, and the slow-client and no-client drops still
count every frame."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter

from core.sink import SinkItem, SinkMetrics
from runtime.logger import Logger
from sinks.mjpeg import MjpegSink, MjpegSinkAttributes


class RecordingTransport:
    def __init__(self, unsent: int = 0) -> None:
        self.writes: list[list[bytes]] = []
        self.unsent = unsent

    def writelines(self, pieces: Any) -> None:
        self.writes.append([bytes(piece) for piece in pieces])

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def is_closing(self) -> bool:
        return False


class Client:
    def __init__(self, transport: RecordingTransport) -> None:
        self.transport = transport


def make_sink() -> tuple[MjpegSink, Counter]:
    items = Counter("sink_items", "items", ["trigger", "outcome", "reason"],
                    registry=CollectorRegistry())
    sink = MjpegSink("cam", MjpegSinkAttributes(), SinkMetrics(items, ["cam"]),
                     Logger("test", 100))
    return sink, items


def count(items: Counter, outcome: str, reason: str = "") -> float:
    return float(items.labels("cam", outcome, reason)._value.get())


def frame(n: int) -> SinkItem:
    return SinkItem(b"\xff\xd8" + bytes([n]) * 100 + b"\xff\xd9", "image/jpeg", {})


def test_corked_frames_leave_in_one_write_per_client_when_uncorked() -> None:
    sink, items = make_sink()
    fast, slow = RecordingTransport(), RecordingTransport(unsent=10**6)
    sink._clients = {Client(fast), Client(slow)}  # type: ignore[assignment]
    sink.cork()
    for n in range(3):
        sink.write(frame(n))
    assert fast.writes == [] and slow.writes == []
    sink.uncork()
    assert len(fast.writes) == 1
    sent = b"".join(fast.writes[0])
    assert sent.count(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: 104\r\n\r\n") == 3
    assert [sent.index(frame(n).body) for n in range(3)] == sorted(
        sent.index(frame(n).body) for n in range(3))
    assert slow.writes == []
    assert count(items, "sent") == 3 and count(items, "dropped", "slow_client") == 3
    sink.write(frame(3))  # uncorked: at once
    assert len(fast.writes) == 2 and frame(3).body in fast.writes[1]


def test_corked_frames_without_clients_are_counted_and_the_latest_kept() -> None:
    sink, items = make_sink()
    sink.cork()
    sink.write(frame(0))
    sink.write(frame(1))
    sink.uncork()
    sink.uncork()  # twice is harmless
    assert count(items, "dropped", "no_clients") == 2
    assert sink._latest is not None and sink._latest[1] == frame(1).body
