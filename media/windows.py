"""Per-connection intake for the websocket trigger's interval modes.

The seed system's websocket trigger has two timed modes; these classes hold
their per-connection state and know nothing of sockets or workers, so the
exact semantics live (and are tested) in one place.

Stream mode (``is_stream: true``), :class:`SlidingWindow`:
    every binary message is appended to the connection's buffer. When the
    buffer grows past ``max_bytes``, ``trim_bytes`` are dropped from its front,
    as many times as needed to get back to at most ``max_bytes`` (so once more
    than ``max_bytes`` have arrived the window holds between
    ``max_bytes - trim_bytes + 1`` and ``max_bytes`` bytes). Every
    ``processing_interval`` ms, if at least ``chunk_bytes`` NEW bytes arrived
    since the last emitted window, ONE event is emitted whose body is the whole
    current buffer (the latest up-to-``max_bytes`` bytes of the stream), and
    the new-bytes count restarts at zero.

Discrete mode (``is_stream: false`` and ``processing_interval > 0``),
:class:`Latest`: every ``processing_interval`` ms the latest message received
since the last emission becomes an event; earlier messages of that interval
are dropped (and counted by the trigger).

In both modes a connection has at most one interval event queued or running:
a tick that comes while the previous one is still being handled is skipped,
so a slow handler sees fewer, fresher events instead of a growing backlog.
"""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class SlidingWindow:
    """The latest up-to-``max_bytes`` bytes of one connection's stream."""

    __slots__ = ("_buffer", "_chunk_bytes", "_max_bytes", "_new_bytes", "_trim_bytes", "total")

    def __init__(self, chunk_bytes: int, max_bytes: int, trim_bytes: int) -> None:
        if not 1 <= trim_bytes <= max_bytes or not 1 <= chunk_bytes <= max_bytes:
            raise ValueError("expected 1 <= chunk_bytes, trim_bytes <= max_bytes")
        self._buffer = bytearray()
        self._chunk_bytes = chunk_bytes
        self._max_bytes = max_bytes
        self._trim_bytes = trim_bytes
        self._new_bytes = 0
        # Bytes received on the connection so far: the window ends at this offset.
        self.total = 0

    def append(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        self._new_bytes += len(data)
        self.total += len(data)
        excess = len(buffer) - self._max_bytes
        if excess > 0:
            # Whole trim_bytes steps, as the seed trims, in one slice however big the message.
            del buffer[:-(-excess // self._trim_bytes) * self._trim_bytes]

    def take(self) -> bytes | None:
        """The window, if at least ``chunk_bytes`` new bytes arrived since the last one."""
        if self._new_bytes < self._chunk_bytes:
            return None
        self._new_bytes = 0
        return bytes(self._buffer)

    def __len__(self) -> int:
        return len(self._buffer)


class Latest(Generic[T]):
    """The most recent message of the current interval; older ones are replaced."""

    __slots__ = ("_item",)

    def __init__(self) -> None:
        self._item: T | None = None

    def offer(self, item: T) -> bool:
        """Keeps ``item``; True when it replaced (dropped) an unprocessed message."""
        replaced = self._item is not None
        self._item = item
        return replaced

    def take(self) -> T | None:
        item, self._item = self._item, None
        return item
