"""Framing between the processor and a process worker: 4-byte length + pickle.

Pickle (protocol 5, C implementation) is the cheapest way to move the small
tuples that make up events and responses; both ends are our own code.
"""

from __future__ import annotations

import pickle
from typing import Any

HEADER = 4
PROTOCOL = 5


def encode(message: Any) -> bytes:
    data = pickle.dumps(message, PROTOCOL)
    return len(data).to_bytes(HEADER, "little") + data


class Decoder:
    """Incremental decoder for a byte stream of frames."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        buffer = self._buffer
        if not buffer and len(data) >= HEADER:
            # Common case: exactly one whole frame per read.
            size = int.from_bytes(data[:HEADER], "little")
            if len(data) == HEADER + size:
                return [pickle.loads(memoryview(data)[HEADER:])]
        buffer += data
        messages = []
        while len(buffer) >= HEADER:
            size = int.from_bytes(buffer[:HEADER], "little")
            end = HEADER + size
            if len(buffer) < end:
                break
            messages.append(pickle.loads(memoryview(buffer)[HEADER:end]))
            del buffer[:end]
        return messages
