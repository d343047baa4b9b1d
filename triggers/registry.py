"""Trigger kind -> implementing class, imported only when a config uses it."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from core.config import ConfigError, unknown_keys, validate_model
from core.function_config import ResolvedTrigger

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


def configured_trigger(trig: ResolvedTrigger) -> tuple[type[Trigger], Any, list[str]]:
    """A configured trigger's class, its validated attributes, and a warning (prefixed with
    the YAML path) per attribute key its model does not know. An unknown kind or bad
    attributes raise ConfigError naming the YAML path: the processor and ``processor kube
    render`` refuse a config with the same message."""
    try:
        cls = trigger_class(trig.kind)
    except UnknownTriggerKind:
        raise ConfigError(f"{trig.yaml_path}.kind: unknown trigger kind {trig.kind!r}; "
                          f"expected one of: {', '.join(sorted(TRIGGERS))}") from None
    attrs_path = f"{trig.yaml_path}.attributes"
    warnings = [f"{attrs_path}: {warning}"
                for warning in unknown_keys(cls.Attributes, trig.attributes)]
    return cls, validate_model(cls.Attributes, trig.attributes, attrs_path), warnings
