"""Events as triggers produce them and as handlers see them.

Triggers build a light, picklable ``RawEvent``; the worker that runs the
handler turns it into a ``nuclio_sdk.Event`` (so JSON bodies are parsed in the
worker, in parallel, not on the processor's event loop).
"""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any, NamedTuple

import nuclio_sdk

_EPOCH = datetime.datetime(1970, 1, 1)


class RawEvent(NamedTuple):
    id: str
    body: bytes
    content_type: str
    headers: dict[str, Any]
    fields: dict[str, Any]
    method: str
    path: str
    url: str
    timestamp: float
    trigger_kind: str
    trigger_name: str
    # Capture this event's function log lines at or above this level (None: don't).
    log_level: int | None = None
    # Rarely used Nuclio event fields (shard_id, num_shards, type, type_version,
    # version, offset, topic), keyed by those names.
    extra: dict[str, Any] | None = None


def new_event_id() -> str:
    # Nuclio's Python runtime reuses ids across events; each of ours is unique.
    return str(uuid.uuid4())


def is_json_content_type(content_type: str) -> bool:
    """True for ``application/json`` with or without parameters such as charset."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json"


def decode_body(body: bytes, content_type: str) -> Any:
    """The body as Nuclio hands it over: parsed when JSON, bytes otherwise."""
    if body and is_json_content_type(content_type):
        try:
            return json.loads(body)
        except ValueError:
            return body
    return body


def to_nuclio_event(raw: RawEvent) -> nuclio_sdk.Event:
    extra = raw.extra or {}
    return nuclio_sdk.Event(
        body=decode_body(raw.body, raw.content_type),
        content_type=raw.content_type,
        trigger=nuclio_sdk.TriggerInfo(raw.trigger_kind, raw.trigger_name),
        fields=raw.fields,
        headers=raw.headers,
        _id=raw.id,
        method=raw.method,
        path=raw.path,
        size=len(raw.body),
        timestamp=_EPOCH + datetime.timedelta(seconds=raw.timestamp),
        url=raw.url,
        shard_id=extra.get("shard_id", 0),
        num_shards=extra.get("num_shards", 0),
        _type=extra.get("type", ""),
        type_version=extra.get("type_version", ""),
        version=extra.get("version", ""),
        offset=extra.get("offset", 0),
        topic=extra.get("topic", ""),
    )
