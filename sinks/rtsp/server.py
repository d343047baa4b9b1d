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
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from sinks.rtsp.connection import RtspConnection
from sinks.rtsp.session import SESSION_TIMEOUT, Session, StreamSource, UdpPorts


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
        self.sdp_version = 1

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
