"""Calls as JetStream key-value records, and the names the JetStream backend uses.

Names (``nats.stream`` = S, ``nats.consumer`` = C, ``nats.bucket`` = B):
- stream ``S-<function>`` (work queue, subject ``S.<function>``): one message per
  attempt-able call, payload = the call id, ``Nats-Msg-Id`` = the call id;
- stream ``S-_callbacks`` (work queue, subject ``S._callbacks``; no function name
  starts with ``_``): final calls whose
  callback is still to be delivered;
- durable pull consumers ``C`` on each function stream and ``C-_callbacks``,
  shared by every replica;
- key-value bucket ``B``: the whole call record (request, state, response) under
  the call id encoded as base64url (KV keys allow no ``:`` or ``~``); bucket
  ``B-dead``: ``<function>.<key>`` for each dead letter.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

from invocations.store import Call

_BYTES = ("body", "resp_body")


def kv_key(call_id: str) -> str:
    return base64.urlsafe_b64encode(call_id.encode()).decode()


def encode(call: Call) -> bytes:
    record = dataclasses.asdict(call)
    for name in _BYTES:
        value = record[name]
        record[name] = None if value is None else base64.b64encode(value).decode()
    return json.dumps(record, separators=(",", ":")).encode()


def decode(data: bytes) -> Call:
    record: dict[str, Any] = json.loads(data)
    for name in _BYTES:
        value = record.get(name)
        record[name] = None if value is None else base64.b64decode(value)
    return Call(**record)


def function_stream(stream: str, function: str) -> tuple[str, str]:
    """(stream name, subject) of a function's queue."""
    return f"{stream}-{function}", f"{stream}.{function}"


def callback_stream(stream: str) -> tuple[str, str]:
    return f"{stream}-_callbacks", f"{stream}._callbacks"
