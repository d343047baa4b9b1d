"""Framing between the processor and a process worker: 4-byte length + pickle.

Pickle (protocol 5, C implementation) is the cheapest way to move the small
tuples that make up events and responses; both ends are our own code. Events
and responses travel as plain tuples: pickling a NamedTuple goes through
Python-level reduce hooks and costs about five times as much.
"""

from __future__ import annotations

import pickle
from typing import Any

from runtime.events import RawEvent
from runtime.responses import RawResponse

HEADER = 4
PROTOCOL = 5

Payload = RawEvent | list[RawEvent]
Result = RawResponse | list[RawResponse]


def flatten(item: Payload | Result) -> Any:
    if isinstance(item, list):
        return [tuple(x) for x in item]
    return tuple(item)


def events_from_wire(data: Any) -> Payload:
    if isinstance(data, list):
        return [RawEvent(*x) for x in data]
    return RawEvent(*data)


def results_from_wire(data: Any) -> Result:
    if isinstance(data, list):
        return [RawResponse(*x) for x in data]
    return RawResponse(*data)


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
