"""A small RTSP 1.0 server (RFC 2326) for one live stream at one path.

It speaks what players (ffplay/ffmpeg, VLC, GStreamer) need: OPTIONS, DESCRIBE
(SDP), SETUP over TCP-interleaved or UDP, PLAY, TEARDOWN, and GET/SET_PARAMETER
as keep-alives. Everything else gets RTSP's own error status and the connection
keeps serving. RTP packets are built once per media unit by the sink and fanned
out here to every playing session:

- TCP: written to the RTSP connection as ``$``-framed interleaved data; a player
  whose socket buffer holds more than ``max_buffer_bytes`` skips whole units
  (counted) until it catches up, so it never slows the others.
- UDP: sent from a per-session server port pair (from ``udp_ports`` when set) to
  the client's ports at the RTSP peer's address; a unit the kernel will not take
  at once is skipped (counted). RTCP from the player is read and discarded; it
  keeps the session alive, as do RTSP requests. UDP sessions without either for
  ``SESSION_TIMEOUT`` seconds are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import secrets
import socket
import struct
import time
from collections.abc import Callable
from typing import Any, Protocol, cast
from urllib.parse import urlsplit

SESSION_TIMEOUT = 60  # seconds, announced in the Session header
MAX_REQUEST_BYTES = 16 * 1024
SERVER_NAME = "nuclio-py-processor"
TRACK = "track0"
PUBLIC = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER"
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            453: "Not Enough Bandwidth", 454: "Session Not Found",
            455: "Method Not Valid in This State", 459: "Aggregate Operation Not Allowed",
            461: "Unsupported Transport", 500: "Internal Server Error",
            501: "Not Implemented", 505: "RTSP Version Not Supported"}


class StreamSource(Protocol):
    """What the server asks the sink about the stream it serves."""

    ssrc: int
    # True when a player must start at a keyframe (H264); JPEG and audio start anywhere.
    keyframes: bool

    def sdp(self, host: str, session_version: int) -> str: ...

    def next_rtp_info(self) -> tuple[int, int]:
        """(sequence number of the next packet, RTP timestamp of the latest unit)."""
        ...

    def on_play(self) -> None:
        """A player started: an H264 sink forces a keyframe."""
        ...

    def on_gap(self) -> None:
        """A player skipped a unit: an H264 sink forces a keyframe soon (rate-limited, so
        that a player that stays slow does not turn the stream into keyframes only)."""
        ...


class UdpPorts:
    """Hands out even/odd server port pairs (RTP, RTCP), from a range or from the OS."""

    def __init__(self, host: str, port_range: tuple[int, int] | None) -> None:
        self.host = host
        self.range = port_range
        self._next = port_range[0] if port_range else 0

    def _pair_at(self, port: int) -> tuple[socket.socket, socket.socket] | None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        rtp = socket.socket(family, socket.SOCK_DGRAM)
        rtcp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            rtp.bind((self.host, port))
            rtcp.bind((self.host, rtp.getsockname()[1] + 1))
        except OSError:
            rtp.close()
            rtcp.close()
            return None
        for sock in (rtp, rtcp):
            sock.setblocking(False)
        return rtp, rtcp

    def allocate(self) -> tuple[socket.socket, socket.socket] | None:
        if self.range is None:
            for _ in range(16):  # the OS picks RTP's port; RTCP's (port + 1) may be taken
                pair = self._pair_at(0)
                if pair is not None and pair[0].getsockname()[1] % 2 == 0:
                    return pair
                if pair is not None:
                    pair[0].close()
                    pair[1].close()
            return None
        low, high = self.range
        span = (high - low + 1) // 2
        for _ in range(span):
            port = self._next
            self._next = low + (self._next - low + 2) % (span * 2)
            pair = self._pair_at(port)
            if pair is not None:
                return pair
        return None


class Session:
    """One SETUP: where its packets go and whether it is playing."""

    def __init__(self, session_id: str, connection: RtspConnection) -> None:
        self.id = session_id
        self.connection: RtspConnection | None = connection
        self.tcp_channel: int | None = None
        self.udp: tuple[socket.socket, socket.socket] | None = None
        self.udp_destination: tuple[str, int] | None = None
        self.playing = False
        self.waiting_keyframe = False
        self.last_seen = time.monotonic()
        self.sent = 0
        self.dropped = 0

    @property
    def transport(self) -> str:
        return "tcp" if self.tcp_channel is not None else "udp"

    def describe(self) -> dict[str, Any]:
        peer = self.connection.peer if self.connection else None
        return {"transport": self.transport, "playing": self.playing, "peer": peer,
                "sent": self.sent, "dropped": self.dropped}

    def close(self, loop: asyncio.AbstractEventLoop) -> None:
        self.playing = False
        if self.udp is not None:
            with contextlib.suppress(Exception):
                loop.remove_reader(self.udp[0].fileno())
                loop.remove_reader(self.udp[1].fileno())
            for sock in self.udp:
                sock.close()
            self.udp = None


class RtspServer:
    """Serves one stream at ``path`` on an already bound listening socket."""

    def __init__(self, sock: socket.socket, path: str, source: StreamSource, *,
                 udp_ports: UdpPorts, max_players: int, max_buffer_bytes: int,
                 on_delivery: Callable[[bool], None]) -> None:
        self.sock = sock
        self.path = path.rstrip("/") or "/"
        self.source = source
        self.udp_ports = udp_ports
        self.max_players = max_players
        self.max_buffer_bytes = max_buffer_bytes
        # Called once per (unit, player): True when sent, False when skipped.
        self.on_delivery = on_delivery
        self.sessions: dict[str, Session] = {}
        self.playing: list[Session] = []
        self.connections: set[RtspConnection] = set()
        self._server: asyncio.AbstractServer | None = None
        self._reaper: asyncio.Task[None] | None = None
        self._sdp_version = 1

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: RtspConnection(self), sock=self.sock)
        self._reaper = asyncio.ensure_future(self._reap())

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        if self._server is not None:
            self._server.close()
        loop = asyncio.get_running_loop()
        for session in list(self.sessions.values()):
            session.close(loop)
        self.sessions.clear()
        self.playing = []
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)

    async def _reap(self) -> None:
        """Closes UDP sessions whose player went quiet (TCP ones end with their socket)."""
        while True:
            await asyncio.sleep(5.0)
            deadline = time.monotonic() - SESSION_TIMEOUT
            for session in list(self.sessions.values()):
                if session.tcp_channel is None and session.last_seen < deadline:
                    self.remove(session)

    def remove(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        if session in self.playing:
            self.playing = [s for s in self.playing if s is not session]
        session.close(asyncio.get_running_loop())

    def play(self, session: Session, wait_keyframe: bool) -> None:
        session.waiting_keyframe = wait_keyframe
        if not session.playing:
            session.playing = True
            self.playing = [*self.playing, session]

    def pause(self, session: Session) -> None:
        session.playing = False
        self.playing = [s for s in self.playing if s is not session]

    # -- fan-out ---------------------------------------------------------------------------
    def broadcast(self, packets: list[bytes], keyframe: bool = True) -> int:
        """Sends one unit's packets to every playing session; returns how many got it."""
        framed: dict[int, bytes] = {}
        delivered = 0
        for session in self.playing:
            if session.waiting_keyframe:
                if not keyframe:
                    continue
                session.waiting_keyframe = False
            ok = self._send(session, packets, framed)
            if ok:
                session.sent += 1
                delivered += 1
            else:
                session.dropped += 1
                if self.source.keyframes:  # what follows a gap cannot decode until an IDR
                    session.waiting_keyframe = True
                    self.source.on_gap()
            self.on_delivery(ok)
        return delivered

    def _send(self, session: Session, packets: list[bytes], framed: dict[int, bytes]) -> bool:
        channel = session.tcp_channel
        if channel is not None:
            conn = session.connection
            if conn is None or conn.transport is None or conn.transport.is_closing():
                return False
            if conn.transport.get_write_buffer_size() > self.max_buffer_bytes:
                return False
            data = framed.get(channel)
            if data is None:
                prefix = b"$" + bytes((channel,))
                data = framed[channel] = b"".join(
                    prefix + struct.pack("!H", len(p)) + p for p in packets)
            conn.transport.write(data)
            return True
        if session.udp is None or session.udp_destination is None:
            return False
        sock, dest = session.udp[0], session.udp_destination
        try:
            for packet in packets:
                sock.sendto(packet, dest)
        except BlockingIOError:
            return False
        except OSError as exc:  # e.g. ECONNREFUSED from an earlier ICMP: the player left
            return exc.errno == errno.ECONNREFUSED
        return True

    def status(self) -> dict[str, Any]:
        return {"players": len(self.playing),
                "sessions": [s.describe() for s in self.sessions.values()]}


class _Request:
    __slots__ = ("cseq", "headers", "method", "url")

    def __init__(self, method: str, url: str, headers: dict[str, str]) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.cseq = headers.get("cseq", "0")


def parse_transport(header: str) -> tuple[str, dict[str, str]] | None:
    """The first transport spec we support: ("tcp", params) or ("udp", params)."""
    for spec in header.split(","):
        parts = [p.strip() for p in spec.split(";") if p.strip()]
        if not parts:
            continue
        profile = parts[0].upper()
        params = {}
        for p in parts[1:]:
            key, _, value = p.partition("=")
            params[key.strip().lower()] = value.strip()
        if profile == "RTP/AVP/TCP":
            return "tcp", params
        if profile in ("RTP/AVP", "RTP/AVP/UDP") and "multicast" not in params \
                and "client_port" in params:
            return "udp", params
    return None


def _port_pair(value: str) -> tuple[int, int]:
    first, _, second = value.partition("-")
    a = int(first)
    b = int(second) if second else a + 1
    if not (0 <= a <= 65535 and 0 <= b <= 65535):
        raise ValueError(value)
    return a, b


class RtspConnection(asyncio.Protocol):
    """One player's RTSP control connection (and its interleaved data, for TCP)."""

    def __init__(self, server: RtspServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.peer: str | None = None
        self.sessions: list[Session] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else None
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        for session in self.sessions:
            if session.tcp_channel is not None:
                self.server.remove(session)
            else:
                session.connection = None  # a UDP session outlives its control connection
        self.transport = None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        buf = self.buffer
        while buf:
            if buf[0] == 0x24:  # '$': interleaved RTCP from the player
                if len(buf) < 4:
                    return
                size = 4 + ((buf[2] << 8) | buf[3])
                if len(buf) < size:
                    return
                del buf[:size]
                for session in self.sessions:
                    session.last_seen = time.monotonic()
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_REQUEST_BYTES:
                    self._reply_raw(400, "0")
                    self.close()
                    buf.clear()
                return
            head = bytes(buf[:end]).decode("latin-1")
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    with contextlib.suppress(ValueError):
                        length = max(0, int(value.strip()))
            if len(buf) < end + 4 + length:
                if end + 4 + length > MAX_REQUEST_BYTES:
                    self._reply_raw(400, "0")
                    self.close()
                    buf.clear()
                return
            del buf[:end + 4 + length]  # bodies (SET_PARAMETER) are not used
            self._handle(head)

    def _reply_raw(self, code: int, cseq: str, headers: list[str] | None = None,
                   body: bytes = b"") -> None:
        if self.transport is None or self.transport.is_closing():
            return
        lines = [f"RTSP/1.0 {code} {_REASONS.get(code, 'Error')}", f"CSeq: {cseq}",
                 f"Server: {SERVER_NAME}", *(headers or [])]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _handle(self, head: str) -> None:
        lines = head.split("\r\n")
        parts = lines[0].split()
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        cseq = headers.get("cseq", "0")
        if len(parts) != 3:
            self._reply_raw(400, cseq)
            return
        if parts[2] != "RTSP/1.0":
            self._reply_raw(505, cseq)
            return
        request = _Request(parts[0].upper(), parts[1], headers)
        handler = getattr(self, f"_on_{request.method.lower()}", None)
        if handler is None:
            self._reply_raw(501, cseq, [f"Public: {PUBLIC}"])
            return
        try:
            handler(request)
        except Exception:  # a bug must cost this request only
            self._reply_raw(500, cseq)

    # -- helpers ---------------------------------------------------------------------------
    def _path_of(self, url: str) -> str:
        return urlsplit(url).path.rstrip("/") or "/"

    def _is_stream(self, url: str, *, track: bool) -> bool:
        path = self._path_of(url)
        if path == self.server.path:
            return True
        return track and path == f"{self.server.path.rstrip('/')}/{TRACK}"

    def _session(self, request: _Request) -> Session | None:
        value = request.headers.get("session")
        if value is None:
            return None
        session = self.server.sessions.get(value.split(";", 1)[0].strip())
        if session is not None:
            session.last_seen = time.monotonic()
        return session

    def _session_header(self, session: Session) -> str:
        return f"Session: {session.id};timeout={SESSION_TIMEOUT}"

    def _base_url(self, request: _Request) -> str:
        parts = urlsplit(request.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"

    # -- methods ---------------------------------------------------------------------------
    def _on_options(self, request: _Request) -> None:
        self._session(request)
        self._reply_raw(200, request.cseq, [f"Public: {PUBLIC}"])

    def _on_get_parameter(self, request: _Request) -> None:
        session = self._session(request)
        extra = [self._session_header(session)] if session else []
        self._reply_raw(200, request.cseq, extra)

    _on_set_parameter = _on_get_parameter

    def _on_describe(self, request: _Request) -> None:
        if not self._is_stream(request.url, track=False):
            self._reply_raw(404, request.cseq)
            return
        assert self.transport is not None
        host = self.transport.get_extra_info("sockname")[0]
        sdp = self.server.source.sdp(host, self.server._sdp_version).encode()
        self._reply_raw(200, request.cseq,
                        ["Content-Type: application/sdp",
                         f"Content-Base: {self._base_url(request)}/"], sdp)

    def _on_setup(self, request: _Request) -> None:
        if not self._is_stream(request.url, track=True):
            self._reply_raw(404, request.cseq)
            return
        parsed = parse_transport(request.headers.get("transport", ""))
        if parsed is None:
            self._reply_raw(461, request.cseq)
            return
        server = self.server
        session = self._session(request)
        if request.headers.get("session") and session is None:
            self._reply_raw(454, request.cseq)
            return
        if session is None and len(server.sessions) >= server.max_players:
            self._reply_raw(453, request.cseq)
            return
        kind, params = parsed
        if session is None:
            session = Session(secrets.token_hex(8), self)
        elif session.transport == "udp":
            session.close(asyncio.get_running_loop())  # re-SETUP: start over
        try:
            if kind == "tcp":
                channels = _port_pair(params.get("interleaved", "0-1"))
                if not all(c <= 255 for c in channels):
                    raise ValueError(params["interleaved"])
                session.tcp_channel = channels[0]
                reply_transport = f"RTP/AVP/TCP;unicast;interleaved={channels[0]}-{channels[1]}"
            else:
                client = _port_pair(params["client_port"])
                pair = server.udp_ports.allocate()
                if pair is None:
                    self._reply_raw(453, request.cseq)
                    return
                self._open_udp(session, pair, client)
                ports = (pair[0].getsockname()[1], pair[1].getsockname()[1])
                reply_transport = (f"RTP/AVP;unicast;client_port={client[0]}-{client[1]};"
                                   f"server_port={ports[0]}-{ports[1]}")
        except (ValueError, KeyError):
            self._reply_raw(400, request.cseq)
            return
        reply_transport += f";ssrc={server.source.ssrc:08X}"
        if session.id not in server.sessions:
            server.sessions[session.id] = session
            self.sessions.append(session)
        self._reply_raw(200, request.cseq, [f"Transport: {reply_transport}",
                                            self._session_header(session)])

    def _open_udp(self, session: Session, pair: tuple[socket.socket, socket.socket],
                  client: tuple[int, int]) -> None:
        assert self.transport is not None
        peer_host = self.transport.get_extra_info("peername")[0]
        session.tcp_channel = None
        session.udp = pair
        session.udp_destination = (peer_host, client[0])
        loop = asyncio.get_running_loop()

        def discard(sock: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while sock.recv(2048):
                    session.last_seen = time.monotonic()

        for sock in pair:
            loop.add_reader(sock.fileno(), discard, sock)

    def _on_play(self, request: _Request) -> None:
        session = self._session(request)
        if session is None:
            self._reply_raw(454, request.cseq)
            return
        seq, rtptime = self.server.source.next_rtp_info()
        base = self._base_url(request)
        if base.endswith(f"/{TRACK}"):
            base = base[:-len(TRACK) - 1]
        self.server.play(session, wait_keyframe=self.server.source.keyframes)
        self.server.source.on_play()
        self._reply_raw(200, request.cseq, [
            self._session_header(session), "Range: npt=0.000-",
            f"RTP-Info: url={base}/{TRACK};seq={seq};rtptime={rtptime}"])

    def _on_pause(self, request: _Request) -> None:
        session = self._session(request)
        if session is None:
            self._reply_raw(454, request.cseq)
            return
        self.server.pause(session)
        self._reply_raw(200, request.cseq, [self._session_header(session)])

    def _on_teardown(self, request: _Request) -> None:
        session = self._session(request)
        if session is None:
            self._reply_raw(454, request.cseq)
            return
        self.server.remove(session)
        if session in self.sessions:
            self.sessions.remove(session)
        self._reply_raw(200, request.cseq)
