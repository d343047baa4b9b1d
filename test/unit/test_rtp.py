"""RTP payload formats (media/rtp.py), the RTSP server's transport parsing and fan-out,
and audio chunking."""

from __future__ import annotations

import itertools
import struct
from typing import Any, cast

import av
import numpy as np
import pytest

from media.audio_chunks import AudioChunker
from media.frames import JpegEncoder
from media.rtp import (
    MAX_PAYLOAD,
    H264Packetizer,
    JpegFrame,
    JpegPacketizer,
    L16Packetizer,
    UnsupportedMedia,
    split_annexb,
)
from sinks.rtsp.connection import parse_transport
from sinks.rtsp.server import RtspServer
from sinks.rtsp.session import Session, UdpPorts


def header(packet: bytes) -> tuple[int, bool, int, int, int]:
    """(payload type, marker, seq, timestamp, ssrc)."""
    first, second, seq, timestamp, ssrc = struct.unpack("!BBHII", packet[:12])
    assert first == 0x80  # version 2, no padding/extension/CSRC
    return second & 0x7F, bool(second & 0x80), seq, timestamp, ssrc


def noise_jpeg(width: int = 320, height: int = 240) -> bytes:
    pixels = np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return JpegEncoder(90).encode(av.VideoFrame.from_ndarray(pixels, format="bgr24"))


def test_jpeg_frame_is_fragmented_with_offsets_tables_and_one_marker() -> None:
    jpeg = noise_jpeg()
    frame = JpegFrame(jpeg)
    # 4:2:0 is type 1; FFmpeg's encoder adds restart markers (DRI) -> type 65.
    assert (frame.width, frame.height, frame.type & 63) == (320, 240, 1)
    restart = 4 if frame.restart_interval else 0
    assert frame.type == 1 + (64 if restart else 0)
    packetizer = JpegPacketizer()
    packets = packetizer.packetize(jpeg, 123456)
    assert len(packets) > 5 and all(len(p) <= 12 + MAX_PAYLOAD for p in packets)
    headers = [header(p) for p in packets]
    assert {h[0] for h in headers} == {26} and {h[3] for h in headers} == {123456}
    assert [h[1] for h in headers] == [False] * (len(packets) - 1) + [True]
    seqs = [h[2] for h in headers]
    assert all((b - a) & 0xFFFF == 1 for a, b in itertools.pairwise(seqs))
    scan = b""
    for i, packet in enumerate(packets):
        body = packet[12:]
        offset = int.from_bytes(body[1:4], "big")
        kind, q, width8, height8 = body[4:8]
        assert (kind, q, width8, height8) == (frame.type, 255, 40, 30)
        assert offset == len(scan)
        if restart:  # restart interval, F=L=1, count 0x3FFF
            assert body[8:12] == struct.pack("!HH", frame.restart_interval, 0xFFFF)
        data = body[8 + restart:]
        if i == 0:  # quantization table header: MBZ, precision, length, two 64-byte tables
            assert data[:4] == b"\x00\x00\x00\x80"
            data = data[4 + 128:]
        scan += data
    assert scan == bytes(frame.scan) and not scan.endswith(b"\xff\xd9")
    assert packetizer.stream.last_timestamp == 123456


def test_jpeg_that_rtp_cannot_carry_is_refused() -> None:
    with pytest.raises(UnsupportedMedia):
        JpegFrame(b"not a jpeg at all")
    jpeg = noise_jpeg()
    progressive = jpeg.replace(b"\xff\xc0", b"\xff\xc2", 1)
    with pytest.raises(UnsupportedMedia, match="baseline"):
        JpegFrame(progressive)
    with pytest.raises(UnsupportedMedia):
        JpegFrame(jpeg[:200])  # cut before the scan


def test_l16_is_big_endian_in_whole_frames_with_sample_timestamps() -> None:
    packetizer = L16Packetizer(16000, 2)
    samples = np.arange(-1000, 1000, dtype="<i2")  # 1000 stereo frames, 4000 bytes
    packets = packetizer.packetize(samples.tobytes() + b"\x01", 5000)  # + a partial frame
    per_packet = MAX_PAYLOAD - MAX_PAYLOAD % 4
    assert [len(p) - 12 for p in packets] == [per_packet, per_packet, 4000 - 2 * per_packet]
    assert [header(p)[3] for p in packets] == [5000, 5000 + per_packet // 4,
                                               5000 + 2 * per_packet // 4]
    wire = b"".join(p[12:] for p in packets)
    assert np.array_equal(np.frombuffer(wire, ">i2"), samples)
    assert {header(p)[0] for p in packets} == {96}


def test_h264_small_nals_go_alone_and_big_ones_as_fu_a() -> None:
    sps, pps = b"\x67\x42\xc0\x1e\xda", b"\x68\xce\x3c\x80"
    idr = b"\x65" + bytes(range(256)) * 12  # 3073 bytes
    access_unit = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps + b"\x00\x00\x01" + idr
    assert [bytes(n) for n in split_annexb(access_unit)] == [sps, pps, idr]
    packetizer = H264Packetizer()
    packets = packetizer.packetize(access_unit, 90000)
    assert (packetizer.sps, packetizer.pps) == (sps, pps)
    bodies = [p[12:] for p in packets]
    assert bodies[:2] == [sps, pps]
    fragments = bodies[2:]
    assert len(fragments) == 3
    assert all(f[0] == (0x65 & 0xE0) | 28 for f in fragments)  # FU indicator: NRI + type 28
    assert [f[1] & 0xC0 for f in fragments] == [0x80, 0x00, 0x40]  # start, middle, end
    assert all(f[1] & 0x1F == 5 for f in fragments)
    assert b"\x65" + b"".join(f[2:] for f in fragments) == idr
    assert [header(p)[1] for p in packets] == [False] * 4 + [True]


def test_rtp_timestamps_wrap_at_32_bits() -> None:
    stream = JpegPacketizer().stream
    stream.timestamp_base = 0xFFFFFFF0
    assert stream.rtp_time(90000) == (0xFFFFFFF0 + 90000) & 0xFFFFFFFF


@pytest.mark.parametrize(("header_value", "expected"), [
    ("RTP/AVP/TCP;unicast;interleaved=0-1", ("tcp", {"unicast": "", "interleaved": "0-1"})),
    ("RTP/AVP;unicast;client_port=5000-5001",
     ("udp", {"unicast": "", "client_port": "5000-5001"})),
    ("RTP/AVP/UDP;unicast;client_port=5000-5001", ("udp", {"unicast": "",
                                                          "client_port": "5000-5001"})),
    ("RTP/AVP;multicast;port=5000-5001, RTP/AVP/TCP;interleaved=2-3",
     ("tcp", {"interleaved": "2-3"})),
    ("RTP/AVP;multicast;port=5000-5001", None),
    ("RAW/RAW/UDP;unicast", None),
])
def test_transport_header(header_value: str, expected: object) -> None:
    assert parse_transport(header_value) == expected


def test_consecutive_chunks_cover_the_stream_without_overlap() -> None:
    chunker = AudioChunker("consecutive", chunk_bytes=4, max_bytes=8, trim_bytes=4,
                           interval_bytes=0)
    out = chunker.feed(b"abcdef") + chunker.feed(b"ghij")
    assert [(c.pcm, c.offset) for c in out] == [(b"abcd", 0), (b"efgh", 4)]


def test_sliding_window_every_interval_of_stream_time() -> None:
    chunker = AudioChunker("sliding", chunk_bytes=2, max_bytes=8, trim_bytes=4,
                           interval_bytes=4)
    assert chunker.feed(b"ab") == []  # before the first interval
    first = chunker.feed(b"cd")
    assert [(c.pcm, c.offset) for c in first] == [(b"abcd", 0)]
    assert chunker.feed(b"efgh") == [(b"abcdefgh", 0)]
    # Over max_bytes: trimmed by trim_bytes from the front; the window ends at the stream end.
    assert chunker.feed(b"ijkl") == [(b"efghijkl", 4)]


class _Transport:
    def __init__(self, backlog: int) -> None:
        self.backlog = backlog
        self.written: list[bytes] = []

    def get_write_buffer_size(self) -> int:
        return self.backlog

    def is_closing(self) -> bool:
        return False

    def write(self, data: bytes) -> None:
        self.written.append(data)


class _H264Source:
    ssrc = 1
    keyframes = True

    def __init__(self) -> None:
        self.gaps = 0

    def on_gap(self) -> None:
        self.gaps += 1


def test_fan_out_skips_slow_players_and_starts_h264_players_at_keyframes() -> None:
    outcomes: list[bool] = []
    source = _H264Source()
    server = RtspServer(cast(Any, None), "/stream", cast(Any, source),
                        udp_ports=UdpPorts("127.0.0.1", None), max_players=4,
                        max_buffer_bytes=1000, on_delivery=outcomes.append)
    players = []
    for backlog, channel in ((0, 0), (5000, 2)):
        connection = cast(Any, type("Conn", (), {})())
        connection.transport = _Transport(backlog)
        session = Session(f"s{channel}", connection)
        session.tcp_channel = channel
        server.play(session, wait_keyframe=True)
        players.append((session, connection.transport))
    (fast, fast_out), (slow, slow_out) = players

    assert server.broadcast([b"p"], keyframe=False) == 0  # both wait for a keyframe
    assert server.broadcast([b"k1", b"k2"], keyframe=True) == 1
    assert fast_out.written == [b"$\x00\x00\x02k1$\x00\x00\x02k2"]
    assert slow_out.written == [] and slow.waiting_keyframe and source.gaps == 1
    assert outcomes == [True, False]
    assert server.broadcast([b"p2"], keyframe=False) == 1  # the slow one waits again
    assert (fast.sent, fast.dropped, slow.sent, slow.dropped) == (2, 0, 0, 1)
