"""ext_proc over Envoy's HTTP transport (``http_service`` in the ext_proc filter).

Why a second transport: with gRPC, every HTTP request through Envoy opens a
bidirectional stream, and a grpc.aio server spends ~300-500 µs of CPU per
stream before any handler runs (README, ext_proc speed). With ``http_service``
Envoy POSTs each message as a JSON ``ProcessingRequest`` over pooled HTTP/1.1
connections and reads a JSON ``ProcessingResponse`` back; served by the lean
HTTP server (core/http1) that costs a fraction of a gRPC stream.

What Envoy allows there (1.40, marked work in progress by Envoy): headers
only, so body modes must be ``NONE`` and trailers are not sent; each message
arrives alone, so a response-headers event does not know its request (as over
gRPC with request headers skipped). A 200 carries the reply; anything else is
an error to Envoy (its ``failure_mode_allow`` decides what the client gets).
"""

from __future__ import annotations

import binascii
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import json_format

from core.http1 import HTTP1Server, Reply, Request, error_reply
from runtime.responses import JSON
from triggers.extproc.mutations import CONTINUE

PHASES = ("request_headers", "response_headers")
# The most JSON one message may be: Envoy's headers are limited to 60 KiB by default,
# base64 and JSON make that ~100 KiB.
MAX_MESSAGE_BYTES = 1 << 20

# (phase, headers, end_of_stream) -> the serialized ProcessingResponse, or None when the
# message could not be handled (the trigger has counted and logged why).
OnMessage = Callable[[str, dict[str, str], bool], Awaitable[bytes | None]]


def parse_message(body: bytes) -> tuple[str, dict[str, str], bool]:
    """A JSON ``ProcessingRequest`` (proto field names, as Envoy writes it) as its phase,
    its headers (Envoy sends lower-case keys, values as base64 ``raw_value``) and its
    ``end_of_stream``; ValueError saying what is wrong otherwise."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(message, dict):
        raise ValueError("the body is not a JSON ProcessingRequest object")
    for phase in PHASES:
        headers = message.get(phase)
        if headers is not None:
            break
    else:
        raise ValueError("Envoy's HTTP transport carries request_headers or "
                         "response_headers only (body modes NONE, no trailers)")
    if not isinstance(headers, dict):
        raise ValueError(f"{phase} is not an object")
    return phase, _header_dict(headers.get("headers") or {}), bool(headers.get("end_of_stream"))


def _header_dict(header_map: Any) -> dict[str, str]:
    entries = (header_map.get("headers") or []) if isinstance(header_map, dict) else None
    if not isinstance(entries, list):  # also a header map that is not an object
        raise ValueError("headers.headers is not a list")
    out: dict[str, str] = {}
    try:
        for entry in entries:
            raw = entry.get("raw_value")
            out[entry["key"]] = _b64(raw).decode("utf-8", "replace") if raw \
                else entry.get("value", "")
    except (AttributeError, KeyError, TypeError, binascii.Error) as exc:
        raise ValueError(f"a header entry is not {{key, raw_value|value}}: {exc}") from None
    return out


def _b64(text: str) -> bytes:
    return binascii.a2b_base64(text, strict_mode=True)  # Envoy's is exact: junk is an error


def to_json(reply: bytes) -> bytes:
    """A serialized ``ProcessingResponse`` as the JSON Envoy reads; plain CONTINUE (what
    most messages get) from a table."""
    known = _CONTINUE_JSON.get(reply)
    if known is not None:
        return known
    return json_format.MessageToJson(pb.ProcessingResponse.FromString(reply),
                                     preserving_proto_field_name=True, indent=None).encode()


_CONTINUE_JSON = {data: orjson.dumps(json_format.MessageToDict(
    pb.ProcessingResponse.FromString(data), preserving_proto_field_name=True))
    for data in CONTINUE.values()}


class HTTPTransport:
    """The lean HTTP server taking Envoy's POSTs for one ext_proc trigger."""

    def __init__(self, on_message: OnMessage, sock: socket.socket,
                 on_bad_message: Callable[[str], None]) -> None:
        self._on_message = on_message
        self._on_bad_message = on_bad_message
        self.server = HTTP1Server(self._handle, sock, max_body=MAX_MESSAGE_BYTES)

    async def _handle(self, request: Request) -> Reply:
        if request.method != "POST":
            return error_reply(405, "ext_proc over HTTP takes POST with a JSON "
                                    "ProcessingRequest")
        if request.error is not None:
            self._on_bad_message(str(request.error))
            return error_reply(request.error.status, str(request.error))
        try:
            phase, headers, end = parse_message(request.body)
        except ValueError as exc:
            self._on_bad_message(str(exc))
            return error_reply(400, str(exc))
        answer = await self._on_message(phase, headers, end)
        if answer is None:
            return error_reply(500, "the message could not be processed")
        return Reply(200, to_json(answer), {"Content-Type": JSON})
