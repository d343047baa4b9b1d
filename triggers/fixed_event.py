"""The predefined event that job and cron triggers send, as the config states it.

Nuclio writes it as ``attributes.event`` with ``body``, ``path``, ``method``
and ``headers``; a body given as a YAML mapping or list is sent as JSON.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import Field

from runtime.events import RawEvent, new_event_id
from triggers.base import TriggerAttributes


class FixedEvent(TriggerAttributes):
    body: str | dict[str, Any] | list[Any] | None = None
    path: str = "/"
    method: str | None = None  # default: POST with a body, GET without
    headers: dict[str, Any] = Field(default_factory=dict)
    contentType: str | None = Field(None, alias="content_type")

    def content_type(self) -> str:
        if self.contentType:
            return self.contentType
        for key, value in self.headers.items():
            if key.lower() == "content-type":
                return str(value)
        return "application/json" if isinstance(self.body, dict | list) else "text/plain"

    def body_bytes(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()

    def raw_event(self, kind: str, trigger_name: str) -> RawEvent:
        """A new event (fresh id, the real time now) from this description."""
        path, _, query = self.path.partition("?")
        fields = dict(part.partition("=")[::2] for part in query.split("&") if part)
        headers = {str(k): str(v) for k, v in self.headers.items()}
        return RawEvent(new_event_id(), self.body_bytes(), self.content_type(), headers, fields,
                        (self.method or ("POST" if self.body is not None else "GET")).upper(),
                        path or "/", self.path, time.time(), kind,
                        trigger_name)
