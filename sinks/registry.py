"""Sink kind -> implementing class, imported only when a config uses it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from core.config import ConfigError

if TYPE_CHECKING:
    from core.sink import Sink

# kind: "module:Class" (lazy, so an unused sink's dependencies never load)
SINKS: dict[str, str] = {
    "rtsp": "sinks.rtsp.sink:RtspSink",
    "mjpeg": "sinks.mjpeg:MjpegSink",
    "websocket": "sinks.websocket:WebSocketSink",
    "webhook": "sinks.webhook:WebhookSink",
    "nats": "sinks.nats:NatsSink",
    "mqtt": "sinks.mqtt:MqttSink",
}


def sink_class(kind: str, yaml_path: str) -> type[Sink]:
    target = SINKS.get(kind)
    if target is None:
        expected = ", ".join(sorted(SINKS)) or "(none available)"
        raise ConfigError(f"{yaml_path}.kind: unknown sink kind {kind!r}; "
                          f"expected one of: {expected}")
    module, _, name = target.partition(":")
    cls: type[Sink] = getattr(importlib.import_module(module), name)
    return cls
