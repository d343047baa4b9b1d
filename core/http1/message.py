"""The lean server's request and reply, and the bytes a reply's head is written as.

A request arrives whole (head and body, decoded) before its handler runs, so a
handler never awaits the network; a reply is a status, headers and a body in one
piece. That is all a function call over HTTP needs, and keeps a request to a handful
of attribute stores instead of aiohttp's lazily parsed request object.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import parse_qsl

from core.http_body import BodyError, BodyTooLarge
from runtime.responses import JSON, dump_json

REASONS = {int(s): s.phrase for s in HTTPStatus}
TEXT = "text/plain; charset=utf-8"
_NO_BODY = frozenset({204, 304})


@dataclass(slots=True, eq=False)
class Request:
    """One HTTP request, whole. ``headers`` keeps the names as sent (a plain dict, the
    last of repeated names winning: what an event carries); ``header`` looks one up
    whatever its case. ``error`` is the body's problem (too large, undecodable), left
    for the handler to answer and count."""

    method: str
    path: str
    raw_path: str
    query_string: str
    headers: dict[str, str]
    body: bytes
    error: BodyError | None = None
    keep_alive: bool = field(default=True, init=False)  # another request may follow
    http10: bool = field(default=False, init=False)
    _lower: dict[str, str] | None = field(default=None, init=False, repr=False)
    _query: dict[str, str] | None = field(default=None, init=False, repr=False)

    def header(self, name: str, default: str | None = None) -> str | None:
        value = self.headers.get(name)
        if value is not None:
            return value
        lower = self._lower
        if lower is None:
            lower = self._lower = {k.lower(): v for k, v in self.headers.items()}
        return lower.get(name.lower(), default)

    @property
    def query(self) -> dict[str, str]:
        """The query string's fields, decoded, the first of repeated names winning (as
        ``dict()`` of aiohttp's ``request.query`` gives)."""
        if self._query is None:
            fields: dict[str, str] = {}
            for key, value in parse_qsl(self.query_string, keep_blank_values=True):
                fields.setdefault(key, value)
            self._query = fields
        return self._query

    def take_body(self, limit: int) -> bytes:
        """The body, or the BodyError it came with (or a new one if it is over ``limit``,
        a route's own limit below the server's)."""
        if self.error is not None:
            raise self.error
        if len(self.body) > limit:
            raise BodyTooLarge.over(limit)
        return self.body


class Reply:
    """A whole response. ``headers`` are written as given; Content-Length, Date and
    Connection are the server's."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int = 200, body: bytes = b"",
                 headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers


class StreamReply(Reply):
    """A response whose body is produced over time (Server-Sent Events, a multipart
    preview): sent with ``Transfer-Encoding: chunked``, one chunk per item of
    ``chunks``, until the iterator ends or the client goes (then it is closed)."""

    __slots__ = ("chunks",)

    def __init__(self, chunks: AsyncIterator[bytes], headers: dict[str, str],
                 status: int = 200) -> None:
        super().__init__(status, b"", headers)
        self.chunks = chunks


def json_reply(status: int, value: object, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, dump_json(value), {"Content-Type": JSON, **(headers or {})})


def error_reply(status: int, message: str) -> Reply:
    """An error in the ``{"error": ...}`` shape every trigger answers with."""
    return Reply(status, dump_json({"error": message}), {"Content-Type": JSON})


def text_reply(status: int, text: str) -> Reply:
    return Reply(status, text.encode(), {"Content-Type": TEXT})


def check_headers(headers: dict[str, str]) -> None:
    """ValueError for a header that would split the response (a CR or LF in it)."""
    for name, value in headers.items():
        if "\n" in value or "\r" in value or "\n" in name or "\r" in name or ":" in name:
            raise ValueError(f"header {name!r} has a newline or colon where it cannot")


class _Clock:
    """The Date header's value, formatted once a second."""

    second = -1
    value = ""

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.value = second, formatdate(second, usegmt=True)
        return cls.value


def encode_reply(reply: Reply, head_only: bool, keep_alive: bool, http10: bool) -> bytes:
    """The response's bytes: status line, headers, and the body unless the request was
    HEAD or the status has none."""
    status = reply.status
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"]
    if reply.headers:
        for name, value in reply.headers.items():
            lowered = name.lower()
            if lowered != "content-length" and lowered != "transfer-encoding" and \
                    lowered != "connection":
                lines.append(f"{name}: {value}\r\n")
    body = reply.body
    if status in _NO_BODY or status < 200:
        body = b""
    elif isinstance(reply, StreamReply):
        lines.append("Transfer-Encoding: chunked\r\n")
    else:
        lines.append(f"Content-Length: {len(body)}\r\n")
    if not keep_alive:
        lines.append("Connection: close\r\n")
    elif http10:
        lines.append("Connection: keep-alive\r\n")
    lines.append(f"Date: {_Clock.now()}\r\n\r\n")
    head = "".join(lines).encode()
    return head if head_only or not body else head + body
