"""The nats sink: each handler result is published to a NATS subject.

The body is the result as the handler made it; its content type and the input's
metadata travel as NATS headers (``Content-Type``, ``X-Nuclio-Frame-Num``,
``X-Nuclio-Timestamp``, ...: the webhook sink's names), next to the configured
``headers``. Publishing is NATS core (at most once): for durability, point
``subject`` at a JetStream stream's subjects and the server stores them. Queueing,
drops and reconnects: see ``broker_sink``.
"""

from __future__ import annotations

import contextlib
from typing import Any

import nats
from pydantic import Field, field_validator

from core.attribute_types import checked_url
from core.sink import SinkItem
from sinks.broker_sink import BrokerSink, BrokerSinkAttributes
from sinks.webhook import field_header


def _public(url: str) -> str:
    parts = url.split("@", 1)
    return parts[0].split("//", 1)[0] + "//" + parts[1] if len(parts) == 2 else url


class NatsSinkAttributes(BrokerSinkAttributes):
    url: str
    subject: str = Field(min_length=1, alias="topic")
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url")
    @classmethod
    def _nats_url(cls, value: str) -> str:
        return checked_url(value, ("nats", "tls"),
                           "expected a nats:// URL, such as 'nats://127.0.0.1:4222'")

    @field_validator("subject")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        if any(c in value for c in " *>") or ".." in value or value.strip(".") != value:
            raise ValueError("expected a subject without wildcards or spaces, such as "
                             "'frames.results'")
        return value


class NatsSink(BrokerSink):
    kind = "nats"
    Attributes = NatsSinkAttributes
    attributes: NatsSinkAttributes

    @property
    def public_url(self) -> str:
        return _public(self.attributes.url)

    def _redact(self, text: str) -> str:
        return text.replace(self.attributes.url, self.public_url)

    def status(self) -> dict[str, Any]:
        return {**super().status(), "subject": self.attributes.subject}

    async def _session(self) -> None:
        attrs = self.attributes
        client = await nats.connect(
            servers=[attrs.url], connect_timeout=attrs.timeout, allow_reconnect=False,
            name=f"nuclio-sink-{self.name}", pending_size=1 << 20)
        subject, fixed = attrs.subject, attrs.headers

        async def publish(item: SinkItem) -> None:
            headers = {**fixed, "Content-Type": item.content_type}
            for name, value in item.fields.items():
                if value is not None:
                    headers[field_header(name)] = str(value).replace("\n", " ")
            await client.publish(subject, item.body, headers=headers)

        try:
            await self._pump(publish, lambda: client.is_connected)
        finally:
            with contextlib.suppress(Exception):
                await client.close()
