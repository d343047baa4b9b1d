"""The mqtt trigger against a real mosquitto: QoS 0 and 1, retained messages, MQTT 5
user properties, a persistent session surviving ``kill -9``, bad credentials."""

from __future__ import annotations

import signal
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from test.brokers import Mosquitto
from test.stream_support import (
    handled_ids,
    mqtt_publish,
    ready,
    ready_when_up,
    records,
    run,
    stream_config,
    wait_for,
)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Any:
    broker = Mosquitto(tmp_path / "mosquitto").start()
    yield broker
    broker.stop()


def mqtt_trigger(url: str, workers: int = 2, **attributes: Any) -> dict[str, Any]:
    attrs = {"subscriptions": [{"topic": "sensors/#", "qos": 1}], "reconnectDelay": "200ms",
             **attributes}
    return {"mq": {"kind": "mqtt", "numWorkers": workers, "url": url, "attributes": attrs}}


def test_mqtt_qos1_qos0_and_retained(mosquitto: Mosquitto, tmp_path: Path,
                                     start_processor: Any) -> None:
    run(mqtt_publish(mosquitto.port, [("sensors/kept", b"retained1", 1)], retain=True))
    trigger = mqtt_trigger(mosquitto.url, workers=4, subscriptions=[
        {"topic": "sensors/#", "qos": 1}, {"topic": "fast/+", "qos": 0}])
    processor = start_processor(stream_config(trigger, tmp_path))
    wait_for(lambda: ready(processor)[0] == 200, 10, "connected", lambda: processor.logs)
    wait_for(lambda: "retained1" in handled_ids(tmp_path), 10, "the retained message")
    run(mqtt_publish(mosquitto.port, [(f"sensors/s{i % 3}", f"q1-{i}".encode(), 1)
                                      for i in range(300)]))
    run(mqtt_publish(mosquitto.port, [("fast/x", f"q0-{i}".encode(), 0) for i in range(100)]))
    expected = {f"q1-{i}" for i in range(300)} | {f"q0-{i}" for i in range(100)}
    wait_for(lambda: set(handled_ids(tmp_path)) >= expected, 30, "every message",
             lambda: processor.logs)
    by_body = {r["body"]: r for r in records(tmp_path)}
    assert by_body["retained1"]["fields"]["retain"] is True
    assert by_body["q1-4"]["topic"] == "sensors/s1" and by_body["q1-4"]["fields"]["qos"] == 1
    assert by_body["q0-3"]["topic"] == "fast/x" and by_body["q0-3"]["fields"]["qos"] == 0
    assert by_body["q1-4"]["fields"]["retain"] is False
    assert len(records(tmp_path)) == len(expected) + 1  # nothing twice without a fault


def test_mqtt5_user_properties_become_headers(mosquitto: Mosquitto, tmp_path: Path,
                                              start_processor: Any) -> None:
    processor = start_processor(stream_config(mqtt_trigger(mosquitto.url, protocolVersion=5),
                                              tmp_path))
    wait_for(lambda: ready(processor)[0] == 200, 10, "connected")
    run(mqtt_publish(mosquitto.port, [("sensors/v5", b"props1", 1)], protocol=5,
                     user_properties=[("camera", "north"), ("frame", "7")]))
    record = wait_for(lambda: records(tmp_path), 10, "the message")[0]
    assert record["headers"] == {"camera": "north", "frame": "7"}


def test_mqtt_persistent_session_redelivers_after_kill_9(mosquitto: Mosquitto,
                                                         tmp_path: Path,
                                                         start_processor: Any) -> None:
    config = stream_config(mqtt_trigger(mosquitto.url, workers=2, clientID="cam-worker"),
                           tmp_path)
    first = start_processor(config)
    wait_for(lambda: ready(first)[0] == 200, 10, "connected")
    run(mqtt_publish(mosquitto.port, [("sensors/a", f"slow:0.05:m{i}".encode(), 1)
                                      for i in range(100)]))
    wait_for(lambda: len(records(tmp_path)) >= 20, 20, "the first messages")
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    done_before = set(handled_ids(tmp_path))
    assert len(done_before) < 100
    # Published while nobody is connected: the broker keeps them for the session.
    run(mqtt_publish(mosquitto.port, [("sensors/b", f"late{i}".encode(), 1)
                                      for i in range(30)]))
    second = start_processor(config)
    expected = {f"m{i}" for i in range(100)} | {f"late{i}" for i in range(30)}
    wait_for(lambda: set(handled_ids(tmp_path)) >= expected, 40,
             "every message after the restart", lambda: second.logs)


def test_mqtt_broker_restarted_mid_stream_loses_nothing(mosquitto: Mosquitto,
                                                        tmp_path: Path,
                                                        start_processor: Any) -> None:
    config = stream_config(mqtt_trigger(mosquitto.url, workers=2, clientID="restart-worker"),
                           tmp_path)
    processor = start_processor(config)
    wait_for(lambda: ready(processor)[0] == 200, 10, "connected")
    run(mqtt_publish(mosquitto.port, [("sensors/r", f"slow:0.03:m{i}".encode(), 1)
                                      for i in range(100)]))
    wait_for(lambda: len(records(tmp_path)) >= 20, 20, "the first messages")
    mosquitto.restart()  # a graceful restart: mosquitto saves sessions and queued messages
    expected = {f"m{i}" for i in range(100)}
    wait_for(lambda: set(handled_ids(tmp_path)) >= expected, 40,
             "every message after the broker restart", lambda: processor.logs)
    wait_for(lambda: ready(processor)[1]["triggers"]["mq"]["broker"]["connects"] >= 2, 10,
             "reconnected")


def test_mqtt_bad_credentials_reported(tmp_path: Path, start_processor: Any) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", users={"cam": "right-pass"}).start()
    try:
        trigger = mqtt_trigger(broker.url)
        trigger["mq"].update(username="cam", password="wrong-pass")  # Nuclio's trigger level
        processor = start_processor(stream_config(trigger, tmp_path), ready=False)

        def refused() -> Any:
            answer = ready_when_up(processor)
            return answer if answer and answer[1]["triggers"]["mq"]["broker"].get(
                "error") else None
        status, body = wait_for(refused, 15, "the refusal on /ready", lambda: processor.logs)
        assert status == 503
        broker_state = body["triggers"]["mq"]["broker"]
        assert broker_state["state"] == "refused", broker_state
        error = broker_state["error"].lower()
        assert "not authori" in error or "bad user name or password" in error, error
        assert requests.get(processor.url(processor.health_port, "/live"), timeout=2).ok
        assert "MQTT broker refused the connection" in processor.logs
        assert "wrong-pass" not in processor.logs and "wrong-pass" not in str(body)
        time.sleep(0.5)
        assert processor.proc.poll() is None
        good_dir = tmp_path / "good"
        good_dir.mkdir()
        good = start_processor(stream_config(
            mqtt_trigger(broker.url, username="cam", password="right-pass"), good_dir))
        run(mqtt_publish(broker.port, [("sensors/auth", b"authed", 1)], username="cam",
                         password="right-pass"))
        wait_for(lambda: handled_ids(good_dir) == ["authed"], 10, "the message", lambda: good.logs)
    finally:
        broker.stop()


def test_mqtt_over_tls(tmp_path: Path, start_processor: Any) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                           "-keyout", str(key), "-out", str(cert), "-days", "2",
                           "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                          capture_output=True, text=True, timeout=30)
    assert made.returncode == 0, f"openssl (apt-get install openssl): {made.stderr}"
    broker = Mosquitto(tmp_path / "mosquitto", extra_config=[f"certfile {cert}",
                                                             f"keyfile {key}"]).start()
    try:
        url = f"ssl://127.0.0.1:{broker.port}"
        processor = start_processor(stream_config(mqtt_trigger(url, tlsCaFile=str(cert)),
                                                  tmp_path))
        wait_for(lambda: ready(processor)[0] == 200, 10, "connected over TLS",
                 lambda: processor.logs + broker.logs)
        context = ssl.create_default_context(cafile=str(cert))
        run(mqtt_publish(broker.port, [("sensors/tls", b"secure1", 1)], tls_context=context))
        wait_for(lambda: handled_ids(tmp_path) == ["secure1"], 10, "the message")
        untrusted = tmp_path / "untrusted"
        untrusted.mkdir()
        refused = start_processor(stream_config(mqtt_trigger(url), untrusted), ready=False)
        status, body = wait_for(
            lambda: (a := ready_when_up(refused)) and a[1]["triggers"]["mq"]["broker"].get(
                "error") and a, 15, "the certificate refused", lambda: refused.logs)
        assert status == 503 and "certificate" in body["triggers"]["mq"]["broker"]["error"]
    finally:
        broker.stop()
