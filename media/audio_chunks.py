"""Audio chunking for the rtsp trigger: which PCM bytes become an event, and when.

``sliding`` (the seed's behaviour): decoded PCM is appended to a window of at
most ``max_bytes`` (trimmed ``trim_bytes`` at a time from the front; see
media/windows.SlidingWindow, shared with the websocket trigger);
every ``processing_interval`` ms of stream time, if at least ``chunk_bytes``
new bytes arrived since the last event, the whole window is one event. Events
overlap: each holds the latest audio, up to ``max_bytes``.

``consecutive``: every ``chunk_bytes`` of PCM is one event, back to back,
without overlap or gaps (``processing_interval`` is not used).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

from media.windows import SlidingWindow

ChunkMode = Literal["sliding", "consecutive"]


class Chunk(NamedTuple):
    pcm: bytes
    offset: int  # stream byte offset of the chunk's first byte


class AudioChunker:
    def __init__(self, mode: ChunkMode, *, chunk_bytes: int, max_bytes: int, trim_bytes: int,
                 interval_bytes: int) -> None:
        """``interval_bytes``: bytes of PCM per ``processing_interval`` (sliding mode)."""
        self.mode = mode
        self.chunk_bytes = chunk_bytes
        self._window = (SlidingWindow(chunk_bytes, max_bytes, trim_bytes)
                        if mode == "sliding" else None)
        self._interval_bytes = max(1, interval_bytes)
        self._next_tick = self._interval_bytes
        self._pending = bytearray()
        self._pending_offset = 0
        self.total = 0  # bytes fed so far

    def feed(self, pcm: bytes) -> list[Chunk]:
        """Appends decoded PCM; returns the chunks that are due (usually none or one)."""
        self.total += len(pcm)
        window = self._window
        if window is None:
            pending = self._pending
            pending += pcm
            size = self.chunk_bytes
            out = []
            while len(pending) >= size:
                out.append(Chunk(bytes(pending[:size]), self._pending_offset))
                del pending[:size]
                self._pending_offset += size
            return out
        window.append(pcm)
        if self.total < self._next_tick:
            return []
        # One tick however much arrived (a burst after a stall does not make several events).
        while self._next_tick <= self.total:
            self._next_tick += self._interval_bytes
        taken = window.take()
        return [] if taken is None else [Chunk(taken, window.total - len(taken))]
