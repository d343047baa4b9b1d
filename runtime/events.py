"""Events as triggers produce them and as handlers see them.

Triggers build a light, picklable ``RawEvent``; the worker that runs the
handler turns it into a ``nuclio_sdk.Event`` (so JSON bodies are parsed in the
worker, in parallel, not on the processor's event loop).
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
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
    # (codec name, options) when the body is in a protocol the worker decodes itself
    # before the handler runs and encodes the result into (see runtime.codecs).
    codec: tuple[str, Any] | None = None


class _EventIds:
    """UUID-shaped ids from a random per-process prefix and a counter: unique like
    uuid4, without a getrandom() syscall per event."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._prefix = str(uuid.uuid4())[:24]
        self._next = itertools.count().__next__

    def __call__(self) -> str:
        return f"{self._prefix}{self._next():012x}"


# Nuclio's Python runtime reuses ids across events; each of ours is unique.
new_event_id = _EventIds()
os.register_at_fork(after_in_child=new_event_id.reset)  # a forked child needs its own prefix


def is_json_content_type(content_type: str) -> bool:
    """True for ``application/json`` with or without parameters such as charset."""
    if not content_type:
        return False
    known = _JSON_TYPES.get(content_type)
    if known is None:  # a stream's events repeat one content type: parse it once
        known = content_type.split(";", 1)[0].strip().lower() == "application/json"
        if len(_JSON_TYPES) < 256:  # bounded: content types come from clients
            _JSON_TYPES[content_type] = known
    return known


_JSON_TYPES: dict[str, bool] = {}


def decode_body(body: bytes, content_type: str) -> Any:
    """The body as Nuclio hands it over: parsed when JSON, bytes otherwise."""
    if body and is_json_content_type(content_type):
        try:
            return json.loads(body)
        except ValueError:
            return body
    return body


class Event(nuclio_sdk.Event):
    """A ``nuclio_sdk.Event`` built without keyword juggling, with a lazy timestamp:
    most handlers never read it, and making a datetime costs more than the rest."""

    def __init__(self, raw: RawEvent, trigger: nuclio_sdk.TriggerInfo) -> None:
        self.body = decode_body(raw.body, raw.content_type)
        self.content_type = raw.content_type
        self.size = len(raw.body)
        self._fill(raw, trigger)

    def _fill(self, raw: RawEvent, trigger: nuclio_sdk.TriggerInfo) -> None:
        """Everything but the body, its content type and size, which an event of a codec
        (runtime.codecs) sets itself: copying the RawEvent to blank them costs more."""
        self.trigger = trigger
        self.fields = raw.fields
        self.headers = raw.headers
        self.id = raw.id
        self.method = raw.method
        self.path = raw.path
        self._epoch = raw.timestamp
        self._timestamp: datetime.datetime | None = None
        self.url = raw.url
        self.last_in_batch = False
        extra = raw.extra
        if not extra:  # most triggers: no stream position
            self.shard_id = self.num_shards = self.offset = 0
            self.type = self.type_version = self.version = self.topic = ""
            return
        self.shard_id = extra.get("shard_id", 0)
        self.num_shards = extra.get("num_shards", 0)
        self.type = extra.get("type", "")
        self.type_version = extra.get("type_version", "")
        self.version = extra.get("version", "")
        self.offset = extra.get("offset", 0)
        self.topic = extra.get("topic", "")

    @property
    def timestamp(self) -> datetime.datetime:
        """Naive UTC, as Nuclio's Python runtime gives it."""
        if self._timestamp is None:
            self._timestamp = _EPOCH + datetime.timedelta(seconds=self._epoch)
        return self._timestamp

    @timestamp.setter
    def timestamp(self, value: datetime.datetime) -> None:
        self._timestamp = value


_triggers: dict[tuple[str, str], nuclio_sdk.TriggerInfo] = {}


def trigger_info(kind: str, name: str) -> nuclio_sdk.TriggerInfo:
    key = (kind, name)
    trigger = _triggers.get(key)
    if trigger is None:
        trigger = _triggers[key] = nuclio_sdk.TriggerInfo(*key)
    return trigger


def to_nuclio_event(raw: RawEvent) -> Event:
    return Event(raw, trigger_info(raw.trigger_kind, raw.trigger_name))
