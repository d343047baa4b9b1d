"""The mqtt sink: each handler result is published to an MQTT topic.

``qos`` 0 (default: frames are perishable) or 1 (the publish waits for the broker's
PUBACK, within ``timeout``); ``retain`` keeps the latest result on the broker for
late subscribers. With ``protocolVersion: 5`` the content type and the input's
metadata (``frame_num``, ``timestamp``, ...) travel as MQTT 5 properties (content
type, user properties); MQTT 3.1.1 carries the body only. Queueing, drops and
reconnects: see ``broker_sink``.
"""

from __future__ import annotations

import ssl
import uuid
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from pydantic import Field, field_validator

from core.attribute_types import checked_url
from core.sink import SinkItem
from sinks.broker_sink import BrokerSink, BrokerSinkAttributes

_TLS = ("ssl", "tls", "mqtts")


class MqttSinkAttributes(BrokerSinkAttributes):
    url: str
    topic: str = Field(min_length=1)
    qos: Literal[0, 1] = 0
    retain: bool = False
    clientID: str | None = Field(None, alias="clientId")
    username: str | None = None
    password: str | None = None
    protocolVersion: Literal[4, 5] = 4

    @field_validator("url")
    @classmethod
    def _mqtt_url(cls, value: str) -> str:
        return checked_url(value, ("tcp", "mqtt", *_TLS),
                           "expected tcp://host:port or ssl://host:port")

    @field_validator("topic")
    @classmethod
    def _no_wildcards(cls, value: str) -> str:
        if "+" in value or "#" in value:
            raise ValueError("expected a topic without wildcards, such as 'frames/results'")
        return value


class MqttSink(BrokerSink):
    kind = "mqtt"
    Attributes = MqttSinkAttributes
    attributes: MqttSinkAttributes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parts = urlsplit(self.attributes.url)
        self.client_id = self.attributes.clientID or f"nuclio-sink-{uuid.uuid4().hex[:8]}"

    @property
    def public_url(self) -> str:
        parts = self._parts
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{parts.hostname}{port}"

    def _redact(self, text: str) -> str:
        for secret in (self.attributes.password, self._parts.password):
            if secret:
                text = text.replace(secret, "***")
        return text

    def status(self) -> dict[str, Any]:
        return {**super().status(), "topic": self.attributes.topic}

    async def _session(self) -> None:
        attrs, parts = self.attributes, self._parts
        tls = parts.scheme in _TLS
        v5 = attrs.protocolVersion == 5
        client = aiomqtt.Client(
            parts.hostname or "", parts.port or (8883 if tls else 1883),
            username=attrs.username or (unquote(parts.username) if parts.username else None),
            password=attrs.password or (unquote(parts.password) if parts.password else None),
            identifier=self.client_id, timeout=attrs.timeout,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            tls_context=ssl.create_default_context() if tls else None,
            max_queued_outgoing_messages=attrs.queueSize)
        topic, qos, retain = attrs.topic, attrs.qos, attrs.retain

        async def publish(item: SinkItem) -> None:
            properties = None
            if v5:
                properties = Properties(PacketTypes.PUBLISH)
                properties.ContentType = item.content_type
                properties.UserProperty = [(name, str(value)) for name, value in
                                           item.fields.items() if value is not None]
            await client.publish(topic, item.body, qos=qos, retain=retain,
                                 properties=properties, timeout=attrs.timeout)

        async with client:
            await self._pump(publish, client._client.is_connected)
