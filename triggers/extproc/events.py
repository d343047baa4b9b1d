"""Envoy ext_proc messages -> the state of one HTTP exchange -> Nuclio events.

One gRPC stream carries one HTTP request and its response. ``Exchange`` keeps
what later phases need (the request's method, path, query fields and request
id; the upstream status) so that each phase's event is built from data
already converted once, not re-read from the protobuf messages.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qsl

from core.http_body import DECODERS, BodyTooLarge, inflate
from runtime.events import RawEvent, new_event_id

PHASE_HEADER = "processing-phase"
# Phase numbers as the event's ``processing-phase`` header gives them.
REQUEST_HEADERS, REQUEST_BODY, RESPONSE_HEADERS, RESPONSE_BODY = "1", "2", "4", "5"
KIND = "extproc"

# Body modes, as envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.BodySendMode numbers.
NONE, STREAMED, BUFFERED, BUFFERED_PARTIAL, FULL_DUPLEX_STREAMED = 0, 1, 2, 3, 4

_PSEUDO = (":method", ":path", ":scheme", ":authority", ":status", ":protocol")


def header_dict(header_map: Any) -> dict[str, str]:
    """Envoy's HeaderMap as a dict; Envoy sends lower-case keys and (1.40) ``raw_value``."""
    return {h.key: h.raw_value.decode("utf-8", "replace") if h.raw_value else h.value
            for h in header_map.headers}


class Direction:
    """The request or the response of an exchange: its headers and body so far."""

    __slots__ = ("body_mode", "chunks", "complete", "content_type", "discarded", "encoding",
                 "event_headers", "headers", "size")

    def __init__(self, body_mode: int) -> None:
        self.body_mode = body_mode
        self.headers: dict[str, str] = {}
        # The headers a handler sees: pseudo-headers removed (":authority" becomes "host").
        self.event_headers: dict[str, str] = {}
        self.encoding = ""  # a content-encoding we decompress, else ""
        self.content_type = ""
        self.chunks: list[bytes] = []
        self.size = 0
        self.discarded = False  # went over the limit: the rest of the body is ignored
        self.complete = False  # the whole body has arrived (and had its event)

    def set_headers(self, headers: dict[str, str], decompress: bool) -> None:
        self.headers = headers
        event_headers = {k: v for k, v in headers.items() if k[0] != ":"} \
            if any(k[0] == ":" for k in headers) else dict(headers)
        authority = headers.get(":authority")
        if authority is not None and "host" not in event_headers:
            event_headers["host"] = authority
        self.event_headers = event_headers
        content_type = headers.get("content-type")
        if content_type is None:  # Envoy sends lower-case keys; a peer might not
            content_type = next((v for k, v in headers.items() if k.lower() == "content-type"),
                                "")
        self.content_type = content_type
        if decompress:
            encoding = headers.get("content-encoding", "").strip().lower()
            if encoding in DECODERS:
                self.encoding = encoding

    def add_chunk(self, chunk: bytes, limit: int) -> None:
        self.size += len(chunk)
        if self.size > limit:
            raise BodyTooLarge(f"the body is over {limit} bytes")
        self.chunks.append(chunk)

    def discard(self) -> None:
        self.chunks = []
        self.discarded = True

    def take_body(self) -> bytes:
        body = b"".join(self.chunks) if len(self.chunks) != 1 else self.chunks[0]
        self.chunks = []
        self.size = 0
        return body


class Exchange:
    """One HTTP request/response pair as seen over one ext_proc stream."""

    __slots__ = ("fields", "method", "path", "request", "request_id", "response", "status",
                 "url")

    def __init__(self, request_mode: int, response_mode: int) -> None:
        self.request = Direction(request_mode)
        self.response = Direction(response_mode)
        self.method = "GET"
        self.path = "/"
        self.url = "/"
        self.fields: dict[str, Any] = {}
        self.request_id = ""
        self.status = 0  # the upstream's, once response headers arrive

    def on_request_headers(self, headers: dict[str, str], decompress: bool,
                           request_id_header: str) -> None:
        self.request.set_headers(headers, decompress)
        self.method = headers.get(":method", "GET")
        self.url = url = headers.get(":path", "/")
        path, sep, query = url.partition("?")
        self.path = path
        if sep:
            self.fields = dict(parse_qsl(query, keep_blank_values=True))
        self.request_id = headers.get(request_id_header, "")
        if self.request_id:
            self.fields["request_id"] = self.request_id

    def on_response_headers(self, headers: dict[str, str], decompress: bool) -> None:
        self.response.set_headers(headers, decompress)
        try:
            self.status = int(headers.get(":status", "0"))
        except ValueError:
            self.status = 0

    def event(self, phase: str, body: bytes, trigger_name: str, limit: int) -> RawEvent:
        """The handler's view of one phase; raises BodyTooLarge/BadEncoding for bad bodies."""
        response = phase >= RESPONSE_HEADERS
        side = self.response if response else self.request
        headers = dict(side.event_headers)
        headers[PHASE_HEADER] = phase
        if body and side.encoding:
            body = inflate(body, side.encoding, limit)
            del headers["content-encoding"]
            headers["content-length"] = str(len(body))
        fields = self.fields
        if response:
            fields = {**fields, "upstream_status": self.status}
        return RawEvent(new_event_id(), body, side.content_type, headers, fields,
                        self.method, self.path, self.url, time.time(), KIND, trigger_name)
