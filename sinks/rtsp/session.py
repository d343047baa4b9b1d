"""RTSP sessions, the UDP port pairs they send from, and the protocol's constants.

Shared by the server (which fans packets out to sessions) and the control
connection (which creates them on SETUP).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any, Protocol

SESSION_TIMEOUT = 60  # seconds, announced in the Session header
MAX_REQUEST_BYTES = 16 * 1024
SERVER_NAME = "nuclio-py-processor"
TRACK = "track0"
PUBLIC = "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER"
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
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


class ControlConnection(Protocol):
    """The RTSP control connection a session was set up on (see connection.py)."""

    peer: str | None
    transport: asyncio.Transport | None


class Session:
    """One SETUP: where its packets go and whether it is playing."""

    def __init__(self, session_id: str, connection: ControlConnection) -> None:
        self.id = session_id
        self.connection: ControlConnection | None = connection
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
