"""A NATS message as a ``RawEvent``, for both NATS triggers.

Body = the payload; ``topic`` (Nuclio's ``event.topic``) and ``path`` = the subject
(Nuclio's NATS event returns the subject as its path); headers = the NATS headers;
content type = the ``Content-Type`` header if the publisher set one. ``fields`` get
what the trigger knows beyond that (the reply subject; JetStream's delivery count
and sequences), and ``offset`` is the stream sequence for JetStream.
"""

from __future__ import annotations

import time
from typing import Any

from nats.aio.msg import Msg

from runtime.events import RawEvent, new_event_id

_NO_HEADERS: dict[str, Any] = {}


def content_type_of(headers: dict[str, str]) -> str:
    for key, value in headers.items():
        if key.lower() == "content-type":
            return value
    return ""


def raw_event(msg: Msg, kind: str, trigger_name: str, url: str, fields: dict[str, Any],
              offset: int = 0) -> RawEvent:
    headers = msg.headers or _NO_HEADERS
    subject = msg.subject
    extra: dict[str, Any] = {"topic": subject}
    if offset:
        extra["offset"] = offset
    return RawEvent(new_event_id(), msg.data, content_type_of(headers) if headers else "",
                    dict(headers), fields, "POST", subject, url, time.time(), kind,
                    trigger_name, None, extra)
