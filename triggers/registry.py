"""Trigger kind -> implementing class, imported only when a config uses it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # keep this module light: the CLI reads TRIGGERS before heavy imports
    from triggers.base import Trigger

# kind: "module:Class" (lazy, so an unused trigger's dependencies never load)
TRIGGERS: dict[str, str] = {
    "http": "triggers.http:HTTPTrigger",
    "websocket": "triggers.websocket.trigger:WebSocketTrigger",
    "job": "triggers.job:JobTrigger",
    "cron": "triggers.cron:CronTrigger",
    "extproc": "triggers.extproc.trigger:ExtProcTrigger",
    "openinference": "triggers.openinference.trigger:OpenInferenceTrigger",
    "rtsp": "triggers.rtsp.trigger:RtspTrigger",
    "mjpeg": "triggers.mjpeg:MjpegTrigger",
    "nats": "triggers.nats.core:NatsTrigger",
    "nats-jetstream": "triggers.nats.jetstream:JetStreamTrigger",
    "mqtt": "triggers.mqtt:MqttTrigger",
}


class UnknownTriggerKind(KeyError):
    pass


def trigger_class(kind: str) -> type[Trigger]:
    target = TRIGGERS.get(kind)
    if target is None:
        raise UnknownTriggerKind(kind)
    module, _, name = target.partition(":")
    cls: type[Trigger] = getattr(importlib.import_module(module), name)
    return cls
