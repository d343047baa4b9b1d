"""RTP packetizers for the rtsp sink: JPEG (RFC 2435), L16 (RFC 3551), H264 (RFC 6184).

Each packetizer turns one media unit (a JPEG, a PCM chunk, an H264 access unit)
into the list of RTP packets every player gets: the packets are built once per
unit and shared, so sequence numbers and timestamps are those of one stream
(like a multicast session); a late player starts at whatever sequence number
comes next (PLAY's RTP-Info says which).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

# Payload bytes per packet: with the 12-byte RTP header and a few bytes of payload
# header this stays under a 1500-byte Ethernet MTU with room for IP/UDP (or TCP framing).
MAX_PAYLOAD = 1400
JPEG_PAYLOAD_TYPE = 26  # static (RFC 3551)
DYNAMIC_PAYLOAD_TYPE = 96
VIDEO_CLOCK = 90_000

_RTP_HEADER = struct.Struct("!BBHII")


class UnsupportedMedia(ValueError):
    """A unit the payload format cannot carry (e.g. a progressive JPEG); it is dropped."""


class RtpStream:
    """Sequence numbers, SSRC and the header layout of one outgoing RTP stream."""

    def __init__(self, payload_type: int, clock_rate: int) -> None:
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(16)  # the next packet's sequence number
        self.timestamp_base = random.getrandbits(32)
        self.last_timestamp = self.timestamp_base  # RTP timestamp of the latest unit

    def packet(self, payload: bytes, timestamp: int, marker: bool) -> bytes:
        header = _RTP_HEADER.pack(0x80, (0x80 if marker else 0) | self.payload_type,
                                  self.seq, timestamp, self.ssrc)
        self.seq = (self.seq + 1) & 0xFFFF
        return header + payload

    def packets(self, fragments: list[bytes], timestamp: int) -> list[bytes]:
        """One unit's packets; the marker bit is on the last one."""
        self.last_timestamp = timestamp
        last = len(fragments) - 1
        return [self.packet(frag, timestamp, i == last) for i, frag in enumerate(fragments)]

    def rtp_time(self, ticks: int) -> int:
        """Media time in clock ticks since the stream's origin -> its 32-bit RTP timestamp."""
        return (self.timestamp_base + ticks) & 0xFFFFFFFF


# -- JPEG (RFC 2435) ----------------------------------------------------------------------

class JpegFrame:
    """What RFC 2435 needs from a baseline JPEG: type, size, tables and the scan data."""

    __slots__ = ("height", "huffman", "quant", "restart_interval", "scan", "type", "width")

    def __init__(self, data: bytes) -> None:
        view = memoryview(data)
        if data[:2] != b"\xff\xd8":
            raise UnsupportedMedia("not a JPEG (no SOI marker)")
        tables: dict[int, bytes] = {}
        components: list[tuple[int, int]] = []  # (sampling factors, quant table id)
        self.restart_interval = 0
        self.width = self.height = 0
        # Huffman tables (class/id byte, counts, values): receivers rebuild the JPEG with
        # the standard ones, so a JPEG with others must be re-encoded before it is sent.
        self.huffman: list[bytes] = []
        pos, end = 2, len(data)
        while pos + 4 <= end:
            if data[pos] != 0xFF:
                raise UnsupportedMedia("corrupt JPEG: expected a marker")
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            length = (data[pos + 2] << 8) | data[pos + 3]
            body = view[pos + 4:pos + 2 + length]
            if marker == 0xDB:  # DQT: one or more tables
                i = 0
                while i < len(body):
                    precision, table_id = body[i] >> 4, body[i] & 0x0F
                    if precision:
                        raise UnsupportedMedia("16-bit quantization tables")
                    tables[table_id] = bytes(body[i + 1:i + 65])
                    i += 65
            elif marker == 0xC4:  # DHT: one or more tables
                i = 0
                while i + 17 <= len(body):
                    size = 17 + sum(body[i + 1:i + 17])
                    self.huffman.append(bytes(body[i:i + size]))
                    i += size
            elif marker == 0xC0:  # SOF0, baseline
                self.height = (body[1] << 8) | body[2]
                self.width = (body[3] << 8) | body[4]
                count = body[5]
                components = [(body[6 + 3 * c + 1], body[6 + 3 * c + 2]) for c in range(count)]
            elif 0xC1 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                raise UnsupportedMedia("only baseline JPEG can travel over RTP")
            elif marker == 0xDD:  # DRI
                self.restart_interval = (body[0] << 8) | body[1]
            elif marker == 0xDA:  # SOS: entropy-coded data follows the header
                scan_end = end - 2 if data[end - 2:] == b"\xff\xd9" else end
                self.scan = view[pos + 2 + length:scan_end]
                break
            pos += 2 + length
        else:
            raise UnsupportedMedia("corrupt JPEG: no scan")
        if len(components) != 3 or components[1][0] != 0x11 or components[2][0] != 0x11:
            raise UnsupportedMedia("RTP/JPEG needs 3-component YUV with 1x1 chroma sampling")
        luma_sampling = components[0][0]
        if luma_sampling == 0x21:
            kind = 0  # 4:2:2
        elif luma_sampling == 0x22:
            kind = 1  # 4:2:0
        else:
            raise UnsupportedMedia("RTP/JPEG needs 4:2:0 or 4:2:2 sampling")
        if not 0 < self.width <= 2040 or not 0 < self.height <= 2040:
            raise UnsupportedMedia("RTP/JPEG carries at most 2040x2040 pixels")
        try:
            self.quant = tables[components[0][1]] + tables[components[1][1]]
        except KeyError:
            raise UnsupportedMedia("corrupt JPEG: a quantization table is missing") from None
        self.type = kind + (64 if self.restart_interval else 0)


class JpegPacketizer:
    """RFC 2435 with in-band tables (Q=255): any quality survives the trip unchanged."""

    media = "video"
    encoding = "JPEG"

    def __init__(self) -> None:
        self.stream = RtpStream(JPEG_PAYLOAD_TYPE, VIDEO_CLOCK)

    def packetize(self, jpeg: bytes | JpegFrame, timestamp: int) -> list[bytes]:
        frame = jpeg if isinstance(jpeg, JpegFrame) else JpegFrame(jpeg)
        # type-specific 0, offset (24 bits, added below), type, Q=255, width/8, height/8
        main = struct.pack("!BBBB", frame.type, 255, (frame.width + 7) >> 3,
                           (frame.height + 7) >> 3)
        restart = (struct.pack("!HH", frame.restart_interval, 0xFFFF)
                   if frame.restart_interval else b"")
        quant = struct.pack("!BBH", 0, 0, len(frame.quant)) + frame.quant
        scan = frame.scan
        fragments: list[bytes] = []
        offset = 0
        total = len(scan)
        while offset < total or not fragments:
            head = struct.pack("!I", offset)  # the top byte is the type-specific field: 0
            first = quant if offset == 0 else b""
            room = MAX_PAYLOAD - 8 - len(restart) - len(first)
            fragments.append(b"".join((head, main, restart, first, scan[offset:offset + room])))
            offset += room
        return self.stream.packets(fragments, timestamp)


# -- L16 (RFC 3551) -----------------------------------------------------------------------

class L16Packetizer:
    """Signed 16-bit big-endian PCM; the RTP clock is the sample rate."""

    media = "audio"
    encoding = "L16"

    def __init__(self, sample_rate: int, channels: int) -> None:
        self.stream = RtpStream(DYNAMIC_PAYLOAD_TYPE, sample_rate)
        self.frame_bytes = 2 * channels
        self.sample_rate = sample_rate
        self.channels = channels
        # Whole sample frames per packet.
        self.packet_bytes = MAX_PAYLOAD - MAX_PAYLOAD % self.frame_bytes

    def packetize(self, pcm_le: bytes, timestamp: int) -> list[bytes]:
        """``pcm_le``: interleaved s16le (a trailing partial frame is dropped). Each packet's
        timestamp is that of its first sample."""
        usable = len(pcm_le) - len(pcm_le) % self.frame_bytes
        wire = swap16(pcm_le[:usable])
        stream = self.stream
        step = self.packet_bytes
        packets = [stream.packet(wire[i:i + step], (timestamp + i // self.frame_bytes)
                                 & 0xFFFFFFFF, False)
                   for i in range(0, usable, step)]
        stream.last_timestamp = timestamp
        return packets


def swap16(data: bytes) -> bytes:
    """Little-endian 16-bit samples <-> big-endian (two C-speed slice copies)."""
    swapped = bytearray(len(data))
    swapped[0::2] = data[1::2]
    swapped[1::2] = data[0::2]
    return bytes(swapped)


# -- H264 (RFC 6184) ----------------------------------------------------------------------

def split_annexb(data: bytes) -> Iterator[memoryview]:
    """NAL units of an Annex B byte stream (start codes 00 00 01 / 00 00 00 01)."""
    view = memoryview(data)
    starts: list[int] = []
    i = data.find(b"\x00\x00\x01")
    while i >= 0:
        starts.append(i + 3)
        i = data.find(b"\x00\x00\x01", i + 3)
    for n, start in enumerate(starts):
        end = starts[n + 1] - 3 if n + 1 < len(starts) else len(data)
        while end > start and data[end - 1] == 0:  # the zero of a 4-byte start code
            end -= 1
        if end > start:
            yield view[start:end]


class H264Packetizer:
    """Single NAL unit packets, and FU-A fragments for NAL units over the MTU
    (packetization-mode=1)."""

    media = "video"
    encoding = "H264"

    def __init__(self) -> None:
        self.stream = RtpStream(DYNAMIC_PAYLOAD_TYPE, VIDEO_CLOCK)
        self.sps: bytes | None = None
        self.pps: bytes | None = None

    def packetize(self, access_unit: bytes, timestamp: int) -> list[bytes]:
        fragments: list[bytes] = []
        for nal in split_annexb(access_unit):
            nal_type = nal[0] & 0x1F
            if nal_type == 7:
                self.sps = bytes(nal)
            elif nal_type == 8:
                self.pps = bytes(nal)
            elif nal_type == 9:  # access unit delimiters carry nothing for RTP
                continue
            if len(nal) <= MAX_PAYLOAD:
                fragments.append(bytes(nal))
                continue
            indicator = (nal[0] & 0xE0) | 28
            body = nal[1:]
            for offset in range(0, len(body), MAX_PAYLOAD - 2):
                header = nal_type
                if offset == 0:
                    header |= 0x80  # start
                if offset + MAX_PAYLOAD - 2 >= len(body):
                    header |= 0x40  # end
                fragments.append(bytes((indicator, header))
                                 + body[offset:offset + MAX_PAYLOAD - 2])
        return self.stream.packets(fragments, timestamp) if fragments else []
