"""The rtsp sink: serves the handler's results as a live RTSP stream for players.

Video goes out as RTP/JPEG (RFC 2435) straight from the handler's JPEG bytes
(no re-encoding), or as H264 (RFC 6184, encoded with PyAV's libx264 on a thread
of its own) when ``codec: h264``. Audio goes out as L16 (RFC 3551) from the
handler's s16le PCM. See sinks/rtsp/server.py for the protocol and per-player
flow control, media/rtp.py for the payload formats.

RTP timestamps are real: video units carry their ``timestamp`` field (the
source's capture time, epoch seconds; the wall clock when absent) on the 90 kHz
clock, kept strictly increasing; audio timestamps count samples, and jump ahead
by the gap when the stream resumes after a pause of more than a second (so
players neither speed up nor drift).

Nothing is packetized or encoded while no player is playing; those items are
counted as dropped with reason ``no_players``.
"""

from __future__ import annotations

import base64
import contextlib
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator, model_validator

from core.attribute_types import StreamPath
from core.config import ConfigError, parse_address
from core.sink import Sink, SinkAttributes, SinkItem
from core.sockets import bind_socket
from media.rtp import (
    VIDEO_CLOCK,
    H264Packetizer,
    JpegFrame,
    JpegPacketizer,
    L16Packetizer,
    UnsupportedMedia,
)
from sinks.rtsp.server import RtspServer
from sinks.rtsp.session import SERVER_NAME, TRACK, UdpPorts

if TYPE_CHECKING:
    from media.frames import FrameDecoder, JpegEncoder

AUDIO_RESYNC_SECONDS = 1.0
GAP_KEYFRAME_SECONDS = 1.0  # at most one keyframe a second for players that skipped data


class RtspSinkAttributes(SinkAttributes):
    port: int = Field(8554, ge=0, le=65535)
    host: str | None = None  # listen host; default: the processor's --listen-host
    path: StreamPath = "/stream"
    type: Literal["video", "audio"] = "video"
    codec: Literal["jpeg", "h264"] = "jpeg"  # video only
    sample_rate: int = Field(16000, ge=1, le=192000)  # audio only: what the PCM is
    channels: int = Field(1, ge=1, le=8)
    udp_ports: str | None = None  # "50000-50099": server RTP/RTCP ports for UDP players
    max_players: int = Field(16, ge=1)
    # A TCP player with more than this many bytes unsent skips units until it catches up.
    max_buffer_bytes: int = Field(1 << 20, ge=1024)
    # H264 encoder knobs (libx264).
    h264_preset: str = "ultrafast"
    h264_crf: int = Field(23, ge=0, le=51)
    keyframe_interval: int = Field(60, ge=1)  # frames
    jpeg_quality: int = Field(80, ge=1, le=100)  # for raw frames sent as JPEG

    @field_validator("udp_ports")
    @classmethod
    def _port_range(cls, value: str | None) -> str | None:
        if value is not None:
            parse_port_range(value)
        return value

    @model_validator(mode="after")
    def _codec_fits_type(self) -> RtspSinkAttributes:
        if self.type == "audio" and self.codec != "jpeg":
            raise ValueError("codec applies to video only; audio is always L16")
        return self


def parse_port_range(value: str) -> tuple[int, int]:
    try:
        low_text, _, high_text = value.partition("-")
        low, high = int(low_text), int(high_text)
    except ValueError:
        raise ValueError("expected 'FIRST-LAST', such as '50000-50099'") from None
    if low % 2 or not 1024 <= low < high <= 65535:
        raise ValueError("expected an even first port >= 1024 and first < last <= 65535")
    return low, high


class RtspSink(Sink):
    kind = "rtsp"
    Attributes = RtspSinkAttributes
    attributes: RtspSinkAttributes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        attrs = self.attributes
        self.packetizer: JpegPacketizer | L16Packetizer | H264Packetizer
        if attrs.type == "audio":
            self.packetizer = L16Packetizer(attrs.sample_rate, attrs.channels)
        elif attrs.codec == "h264":
            self.packetizer = H264Packetizer()
        else:
            self.packetizer = JpegPacketizer()
        self.keyframes = attrs.codec == "h264"
        self.ssrc = self.packetizer.stream.ssrc
        self.server: RtspServer | None = None
        self._encoder: H264Encoder | None = None
        self._origin: float | None = None  # media time of RTP timestamp 0 (seconds)
        self._last_time = float("-inf")
        self._audio_samples = 0  # samples sent since the origin
        self._audio_wall: float | None = None  # monotonic time at the audio origin
        self._warned: set[str] = set()
        self._last_gap_keyframe = float("-inf")
        self._raw: tuple[FrameDecoder, JpegEncoder] | None = None  # raw frames -> JPEG
        self._standard_huffman: frozenset[bytes] | None = None

    # -- life cycle --------------------------------------------------------------------------
    def bind(self, default_host: str) -> None:
        attrs = self.attributes
        host = attrs.host or default_host
        yaml_path = f"spec.triggers.{self.name}.attributes.sink.attributes.port"
        address = parse_address(f"{host}:{attrs.port}", yaml_path, host)
        sock = bind_socket(address, yaml_path)
        udp_host = "::" if ":" in address.host else ("0.0.0.0" if address.host in ("", "0.0.0.0")
                                                     else address.host)
        udp_range = parse_port_range(attrs.udp_ports) if attrs.udp_ports else None
        self.server = RtspServer(sock, attrs.path, self, udp_ports=UdpPorts(udp_host, udp_range),
                                 max_players=attrs.max_players,
                                 max_buffer_bytes=attrs.max_buffer_bytes,
                                 on_delivery=self._delivered)

    async def start(self) -> None:
        if self.server is None:
            raise ConfigError(f"spec.triggers.{self.name}.attributes.sink: bind() was not called")
        sock = self.server.sock
        sock.listen(128)
        await self.server.start()
        if isinstance(self.packetizer, H264Packetizer):
            self._encoder = H264Encoder(self, self.attributes)
        host, port = sock.getsockname()[:2]
        self.logger.info_with("RTSP sink listening", trigger=self.name,
                              url=f"rtsp://{host}:{port}{self.attributes.path}")

    async def close(self) -> None:
        if self._encoder is not None:
            self._encoder.stop()
        if self.server is not None:
            await self.server.close()

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {"codec": self.packetizer.encoding}
        if self.server is not None:
            details.update(self.server.status())
        return details

    # -- what the RTSP server asks -------------------------------------------------------------
    def sdp(self, host: str, session_version: int) -> str:
        family = "IP6" if ":" in host else "IP4"
        stream = self.packetizer.stream
        pt = stream.payload_type
        lines = ["v=0", f"o=- {self.ssrc} {session_version} IN {family} {host}",
                 f"s={self.name}", f"c=IN {family} {'::' if family == 'IP6' else '0.0.0.0'}",
                 "t=0 0", f"a=tool:{SERVER_NAME}", "a=control:*", "a=range:npt=0-",
                 f"m={self.packetizer.media} 0 RTP/AVP {pt}"]
        packetizer = self.packetizer
        if isinstance(packetizer, L16Packetizer):
            lines.append(f"a=rtpmap:{pt} L16/{packetizer.sample_rate}/{packetizer.channels}")
        elif isinstance(packetizer, H264Packetizer):
            lines.append(f"a=rtpmap:{pt} H264/90000")
            fmtp = f"a=fmtp:{pt} packetization-mode=1"
            if packetizer.sps and packetizer.pps:
                sets = b",".join(base64.b64encode(x) for x in (packetizer.sps, packetizer.pps))
                fmtp += (f";profile-level-id={packetizer.sps[1:4].hex()}"
                         f";sprop-parameter-sets={sets.decode()}")
            lines.append(fmtp)
        else:
            lines.append(f"a=rtpmap:{pt} JPEG/90000")
        lines.append(f"a=control:{TRACK}")
        return "\r\n".join(lines) + "\r\n"

    def next_rtp_info(self) -> tuple[int, int]:
        stream = self.packetizer.stream
        return stream.seq, stream.last_timestamp

    def on_play(self) -> None:
        if self._encoder is not None:
            self._encoder.force_keyframe()

    def on_gap(self) -> None:
        now = time.monotonic()
        if self._encoder is not None and now - self._last_gap_keyframe >= GAP_KEYFRAME_SECONDS:
            self._last_gap_keyframe = now
            self._encoder.force_keyframe()

    def _delivered(self, ok: bool) -> None:
        if ok:
            self.metrics.sent()
        else:
            self.metrics.dropped("slow_player")

    # -- the hot path ----------------------------------------------------------------------------
    def write(self, item: SinkItem) -> None:
        server = self.server
        if server is None or not server.playing:
            self.metrics.dropped("no_players")
            return
        packetizer = self.packetizer
        try:
            if isinstance(packetizer, L16Packetizer):
                packets = packetizer.packetize(item.body, self._audio_timestamp(item.body))
            elif isinstance(packetizer, JpegPacketizer):
                packets = packetizer.packetize(self._as_jpeg(item),
                                               packetizer.stream.rtp_time(self._video_ticks(item)))
            else:
                assert self._encoder is not None
                if not self._encoder.offer(item, self._video_ticks(item)):
                    self.metrics.dropped("encoder_busy")
                return
        except UnsupportedMedia as exc:
            self._drop_unsupported(str(exc))
            return
        if packets:
            server.broadcast(packets)

    def _as_jpeg(self, item: SinkItem) -> JpegFrame:
        """The item as an RTP-ready JPEG. Raw frames, and JPEGs whose Huffman tables are
        not the standard ones (FFmpeg's default ``huffman=optimal``), are encoded here, on
        the loop (a few ms a frame: have the handler return standard JPEGs when it can)."""
        if item.body[:2] == b"\xff\xd8":
            frame = JpegFrame(item.body)
            if self._standard_huffman is None:
                from media.frames import standard_huffman_tables

                self._standard_huffman = standard_huffman_tables()
            if self._standard_huffman.issuperset(frame.huffman):
                return frame
        if self._raw is None:
            from media.frames import FrameDecoder, JpegEncoder

            self._raw = (FrameDecoder(), JpegEncoder(self.attributes.jpeg_quality))
        try:
            return JpegFrame(self._raw[1].encode(self._raw[0].decode(item)))
        except Exception as exc:  # any frame that does not convert costs that frame only
            raise UnsupportedMedia(str(exc)) from None

    def _drop_unsupported(self, reason: str) -> None:
        self.metrics.dropped("unsupported")
        if reason not in self._warned:  # once per distinct reason, not per frame
            self._warned.add(reason)
            self.logger.warn_with("RTSP sink dropped an item it cannot send", trigger=self.name,
                                  reason=reason)

    def send_access_unit(self, data: bytes, ticks: int, keyframe: bool) -> None:
        """From the H264 encoder thread (via the loop): packetize and fan out."""
        if self.server is None:
            return
        packetizer = self._h264()
        packets = packetizer.packetize(data, packetizer.stream.rtp_time(ticks))
        if packets:
            self.server.broadcast(packets, keyframe)

    def _h264(self) -> H264Packetizer:
        assert isinstance(self.packetizer, H264Packetizer)
        return self.packetizer

    def _video_ticks(self, item: SinkItem) -> int:
        """90 kHz ticks since the first item, from its capture time (unwrapped)."""
        when = item.fields.get("timestamp")
        if not isinstance(when, int | float):
            when = time.time()
        if self._origin is None:
            self._origin = when
        # Strictly increasing, even if the source's clock steps back (a restarted source).
        when = max(when, self._last_time + 1e-4)
        self._last_time = when
        return round((when - self._origin) * VIDEO_CLOCK)

    def _audio_timestamp(self, pcm: bytes) -> int:
        packetizer = self.packetizer
        assert isinstance(packetizer, L16Packetizer)
        now = time.monotonic()
        if self._audio_wall is None:
            self._audio_wall = now
        behind = (now - self._audio_wall) - self._audio_samples / packetizer.sample_rate
        if behind > AUDIO_RESYNC_SECONDS:  # a pause in the input: leave a gap, not a jump
            self._audio_samples += int(behind * packetizer.sample_rate)
        timestamp = packetizer.stream.rtp_time(self._audio_samples)
        self._audio_samples += len(pcm) // packetizer.frame_bytes
        return timestamp


class H264Encoder:
    """libx264 on a thread: the event loop never waits for an encode. One frame waits at
    most; a frame that finds it taken is dropped (counted by the sink)."""

    def __init__(self, sink: RtspSink, attrs: RtspSinkAttributes) -> None:
        import asyncio

        self.sink = sink
        self.attrs = attrs
        self.loop = asyncio.get_running_loop()
        # (item, 90 kHz ticks since the stream's origin)
        self.queue: queue.Queue[tuple[SinkItem, int] | None] = queue.Queue(maxsize=1)
        self._keyframe = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"h264-{sink.name}", daemon=True)
        self.thread.start()

    def offer(self, item: SinkItem, ticks: int) -> bool:
        try:
            self.queue.put_nowait((item, ticks))
        except queue.Full:
            return False
        return True

    def force_keyframe(self) -> None:
        self._keyframe.set()

    def stop(self) -> None:
        with contextlib.suppress(queue.Empty):
            self.queue.get_nowait()  # make room for the stop signal (a frame not sent)
        with contextlib.suppress(queue.Full):
            self.queue.put_nowait(None)
        self.thread.join(timeout=2.0)

    def _run(self) -> None:
        import av
        from av.video.frame import PictureType  # PyAV loads only when H264 is configured

        from media.frames import FrameDecoder

        decoder = FrameDecoder()
        encoder: Any = None
        size: tuple[int, int] | None = None
        base = 0  # ticks at the encoder's first frame: its pts 0
        while True:
            job = self.queue.get()
            if job is None:
                return
            item, ticks = job
            try:
                frame = decoder.decode(item)
                if size != (frame.width - frame.width % 2, frame.height - frame.height % 2):
                    size = (frame.width - frame.width % 2, frame.height - frame.height % 2)
                    encoder = self._open(av, *size)
                    base = ticks
                    self._keyframe.clear()
                if frame.format.name != "yuv420p" or (frame.width, frame.height) != size:
                    frame = frame.reformat(width=size[0], height=size[1], format="yuv420p")
                frame.pts = ticks - base
                if self._keyframe.is_set():
                    self._keyframe.clear()
                    frame.pict_type = PictureType.I
                for packet in encoder.encode(frame):
                    self.loop.call_soon_threadsafe(
                        self.sink.send_access_unit, bytes(packet),
                        base + int(packet.pts or 0), packet.is_keyframe)
            except Exception as exc:  # one bad frame must not end the encoder thread
                self.loop.call_soon_threadsafe(self.sink._drop_unsupported, str(exc))

    def _open(self, av: Any, width: int, height: int) -> Any:
        from fractions import Fraction

        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height = width, height  # even: 4:2:0 needs it
        encoder.pix_fmt = "yuv420p"
        encoder.time_base = Fraction(1, 90000)
        encoder.gop_size = self.attrs.keyframe_interval
        encoder.max_b_frames = 0
        encoder.options = {"tune": "zerolatency", "preset": self.attrs.h264_preset,
                           "crf": str(self.attrs.h264_crf)}
        return encoder
