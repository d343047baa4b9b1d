"""Broken stream trigger and sink configs: exit 2, one error naming the YAML path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from test.conftest import function_config, run_config_once

NATS = "nats://127.0.0.1:4222"
MQTT = "tcp://127.0.0.1:1883"
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("nats-no-url", {"kind": "nats", "attributes": {"topic": "a"}}, "spec.triggers.t.url"),
    ("nats-http-url", {"kind": "nats", "url": "http://x:1", "attributes": {"topic": "a"}},
     "spec.triggers.t.url"),
    ("nats-no-topic", {"kind": "nats", "url": NATS, "attributes": {}},
     "spec.triggers.t.attributes.topic"),
    ("nats-bad-subject", {"kind": "nats", "url": NATS, "attributes": {"topic": "a.>.b"}},
     "spec.triggers.t.attributes.topic"),
    ("js-no-stream", {"kind": "nats-jetstream", "url": NATS, "attributes": {}},
     "spec.triggers.t.attributes.stream"),
    ("js-ack-mode", {"kind": "nats-jetstream", "url": NATS,
                     "attributes": {"stream": "S", "explicitAckMode": "enable"}},
     "spec.triggers.t.attributes.explicitAckMode"),
    ("js-trigger-level-ack-mode", {"kind": "nats-jetstream", "url": NATS,
                                   "explicitAckMode": "explicitOnly",
                                   "attributes": {"stream": "S"}},
     "spec.triggers.t.explicitAckMode"),
    ("js-ack-wait", {"kind": "nats-jetstream", "url": NATS,
                     "attributes": {"stream": "S", "ackWait": "soon"}},
     "spec.triggers.t.attributes.ackWait"),
    ("js-bad-stream-name", {"kind": "nats-jetstream", "url": NATS,
                            "attributes": {"stream": "a.b"}},
     "spec.triggers.t.attributes.stream"),
    ("mqtt-qos", {"kind": "mqtt", "url": MQTT,
                  "attributes": {"subscriptions": [{"topic": "a", "qos": 3}]}},
     "spec.triggers.t.attributes.subscriptions[0].qos"),
    ("mqtt-no-subscriptions", {"kind": "mqtt", "url": MQTT, "attributes": {"subscriptions": []}},
     "spec.triggers.t.attributes.subscriptions"),
    ("mqtt-scheme", {"kind": "mqtt", "url": "ftp://h:1",
                     "attributes": {"subscriptions": [{"topic": "a"}]}}, "spec.triggers.t.url"),
    ("nats-sink-url", {"kind": "mjpeg", "attributes": {
        "url": "http://127.0.0.1:1/x.mjpg",
        "sink": {"kind": "nats", "attributes": {"url": "http://x", "subject": "s"}}}},
     "spec.triggers.t.attributes.sink.attributes.url"),
    ("mqtt-sink-qos", {"kind": "mjpeg", "attributes": {
        "url": "http://127.0.0.1:1/x.mjpg",
        "sink": {"kind": "mqtt", "attributes": {"url": MQTT, "topic": "t", "qos": 7}}}},
     "spec.triggers.t.attributes.sink.attributes.qos"),
]


@pytest.mark.parametrize(("trigger", "path"), [(c[1], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_stream_config_exits_2_naming_the_path(tmp_path: Path, trigger: dict[str, Any],
                                                   path: str) -> None:
    config = function_config("stream_record:handler", triggers={"t": trigger})
    config["spec"]["disableDefaultHTTPTrigger"] = True
    result = run_config_once(tmp_path, config)
    assert result.returncode == 2, result.stdout + result.stderr
    assert path in result.stdout + result.stderr, result.stdout + result.stderr
