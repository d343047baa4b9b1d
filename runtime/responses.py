"""Turning whatever a handler returns into a wire-ready response.

Follows Nuclio's conversion table with the documented, deliberate divergences:
``None`` is an empty 200 (Nuclio sends the text "None"), header values of any
type are kept as text (Nuclio drops non-strings), bytes are
``application/octet-stream``, and a list is JSON unless the trigger batches.
"""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any, NamedTuple

import nuclio_sdk

TEXT = "text/plain"
JSON = "application/json"
BINARY = "application/octet-stream"


class RawResponse(NamedTuple):
    status: int
    headers: dict[str, str]
    body: bytes
    content_type: str
    event_id: str | None = None
    # Function log records captured for this event (X-Nuclio-Log-Level).
    logs: list[dict[str, Any]] | None = None


class OutputError(Exception):
    """The handler returned something that cannot be sent."""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    return str(value)


def dump_json(value: Any) -> bytes:
    return json.dumps(value, default=_json_default, separators=(",", ":")).encode()


def _body_bytes(body: Any, content_type: str | None) -> tuple[bytes, str]:
    """Encodes a body; ``content_type`` None means 'infer from the body'."""
    if body is None:
        return b"", content_type or TEXT
    if isinstance(body, str):
        return body.encode(), content_type or TEXT
    if isinstance(body, bytes):
        return body, content_type or BINARY
    if isinstance(body, bytearray | memoryview):
        return bytes(body), content_type or BINARY
    if isinstance(body, dict | list):
        return dump_json(body), JSON if content_type in (None, TEXT) else content_type
    if isinstance(body, bool | int | float):
        return str(body).encode(), content_type or TEXT
    raise OutputError(f"cannot send a body of type {type(body).__name__}")


def _headers(headers: Any) -> dict[str, str]:
    if not headers:
        return {}
    return {str(k): v if isinstance(v, str) else str(v) for k, v in dict(headers).items()
            if v is not None}


def convert_output(output: Any, event_id: str | None = None) -> RawResponse:
    """One handler result (not a batch) as a response."""
    if isinstance(output, str):
        return RawResponse(200, {}, output.encode(), TEXT, event_id)
    if isinstance(output, dict | list):
        return RawResponse(200, {}, dump_json(output), JSON, event_id)
    if output is None:
        return RawResponse(200, {}, b"", TEXT, event_id)
    if isinstance(output, nuclio_sdk.Response):
        # nuclio_sdk.Response defaults content_type to text/plain even for dicts.
        ctype = output.content_type
        body, ctype = _body_bytes(output.body, None if ctype == TEXT else ctype)
        return RawResponse(int(output.status_code), _headers(output.headers), body, ctype,
                           output.event_id or event_id)
    if isinstance(output, tuple) and len(output) == 2:
        status, body = output
        data, ctype = _body_bytes(body, None)
        return RawResponse(int(status), {}, data, ctype, event_id)
    data, ctype = _body_bytes(output, None)
    return RawResponse(200, {}, data, ctype, event_id)


def convert_exception(exc: BaseException, event_id: str | None) -> RawResponse | None:
    """A response for ``nuclio_sdk.ExceptionWithResponse``; None for other errors."""
    if isinstance(exc, nuclio_sdk.ExceptionWithResponse):
        body, ctype = _body_bytes(exc.body, exc.content_type)
        return RawResponse(int(exc.status_code), {}, body, ctype, event_id)
    return None


def error_response(status: int, message: str, event_id: str | None = None,
                   details: dict[str, Any] | None = None) -> RawResponse:
    """A runtime-made error in the JSON shape ``{"error": ...}`` used everywhere."""
    return RawResponse(status, {}, dump_json({"error": message, **(details or {})}), JSON,
                       event_id)


def convert_batch_output(output: Any, event_ids: list[str]) -> list[RawResponse]:
    """Matches a batch handler's responses to its events by ``event_id``.

    Items without an ``event_id`` are matched by position; an event left without
    a response gets a 500 so its caller is never left waiting.
    """
    items = output if isinstance(output, list) else [output] * len(event_ids)
    by_id: dict[str, RawResponse] = {}
    known = set(event_ids)
    for position, item in enumerate(items):
        response = convert_output(item)
        event_id = response.event_id
        if event_id not in known and position < len(event_ids):
            event_id = event_ids[position]
        if event_id is not None and event_id in known and event_id not in by_id:
            by_id[event_id] = response._replace(event_id=event_id)
    return [
        by_id.get(event_id)
        or error_response(500, "the batch handler returned no response for this event", event_id)
        for event_id in event_ids
    ]
