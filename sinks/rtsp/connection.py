"""One player's RTSP control connection: request parsing (RFC 2326) and the methods.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from typing import Protocol, cast
from urllib.parse import urlsplit

from sinks.rtsp.session import (
    MAX_REQUEST_BYTES,
    PUBLIC,
    REASONS,
    SERVER_NAME,
    SESSION_TIMEOUT,
    TRACK,
    Session,
    StreamSource,
    UdpPorts,
)


class ServerState(Protocol):
    """What a control connection needs of the server it belongs to (server.py)."""

    path: str
    source: StreamSource
    sdp_version: int
    sessions: dict[str, Session]
    connections: set[RtspConnection]
    udp_ports: UdpPorts
    max_players: int

    def play(self, session: Session, wait_keyframe: bool) -> None: ...

    def pause(self, session: Session) -> None: ...

    def remove(self, session: Session) -> None: ...


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

    def __init__(self, server: ServerState) -> None:
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
        lines = [f"RTSP/1.0 {code} {REASONS.get(code, 'Error')}", f"CSeq: {cseq}",
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
        sdp = self.server.source.sdp(host, self.server.sdp_version).encode()
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
