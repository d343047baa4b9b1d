"""One open WebSocket connection: its bounded event queue, counters and interval state.

Kept apart from the trigger so the per-connection bookkeeping (what is queued,
what a shutdown or an overflow drops) reads in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any, Literal, NamedTuple

from aiohttp import WSMsgType, web
from aiohttp.web_request import BaseRequest

from media.windows import Latest, SlidingWindow
from runtime.events import RawEvent, is_json_content_type


class Item(NamedTuple):
    event: RawEvent
    received: float  # perf_counter() at receipt, for the latency histogram
    kind: Literal["message", "timed", "control"] = "message"


def is_text_like(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or is_json_content_type(media) or media.endswith("+json")


class Connection:
    """One open WebSocket: its queue of events, counters and interval-mode state."""

    __slots__ = ("close_code", "consumer", "headers", "id", "latest", "path", "queue",
                 "received", "timed_pending", "url", "window", "ws")

    def __init__(self, ws: web.WebSocketResponse[Any], request: BaseRequest,
                 window: SlidingWindow | None, latest: Latest[Item] | None) -> None:
        self.id = str(uuid.uuid4())
        self.ws = ws
        # Plain str keys, as the HTTP trigger gives them.
        self.headers = {str(k): v for k, v in request.headers.items()}
        self.path = request.path
        self.url = request.raw_path
        self.queue: asyncio.Queue[Item | None] = asyncio.Queue()
        self.received = 0  # messages so far: the message_num of the latest one
        self.timed_pending = False  # an interval event is queued or running
        self.window = window
        self.latest = latest
        self.consumer: asyncio.Task[None] | None = None
        # How it ended: the code we closed with (aiohttp says 1006 after a protocol error),
        # else aiohttp's.
        self.close_code: int | None = None

    async def send(self, body: bytes, opcode: WSMsgType) -> None:
        ws = self.ws
        if ws.closed:
            return
        with contextlib.suppress(ConnectionResetError):  # the peer left: nobody to tell
            await ws.send_frame(body, opcode)

    def drop_pending(self, keep_control: bool) -> int:
        """Empties the queue (but for connection events, if asked); returns messages dropped."""
        queue, kept, dropped = self.queue, [], 0
        while not queue.empty():
            item = queue.get_nowait()
            if item is None or (keep_control and item.kind == "control"):
                kept.append(item)
            else:
                dropped += 1
        for item in kept:
            queue.put_nowait(item)
        self.timed_pending = False
        return dropped


def is_utf8(body: bytes) -> bool:
    try:
        body.decode()
    except UnicodeDecodeError:
        return False
    return True
