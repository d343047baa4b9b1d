"""The nats and mqtt sinks end to end: frames from a real MJPEG camera (ffmpeg) run
through the mjpeg trigger's handler and arrive on a NATS subject and an MQTT topic;
with the broker down, results are dropped and counted and the trigger keeps going."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiomqtt
import nats

from test.brokers import Mosquitto, NatsServer
from test.conftest import function_config
from test.mjpeg_support import FfmpegMjpegSource
from test.stream_support import metric, ready, wait_for
from test.support import free_port

JPEG_START = b"\xff\xd8"


def sink_config(camera_url: str, sink: dict[str, Any]) -> dict[str, Any]:
    config = function_config("frames_passthrough:handler", triggers={"cam": {
        "kind": "mjpeg", "numWorkers": 1, "attributes": {"url": camera_url, "sink": sink}}})
    config["spec"]["disableDefaultHTTPTrigger"] = True
    return config


def sink_items(processor: Any, outcome: str, reason: str | None = None) -> float:
    labels = {"outcome": outcome, **({"reason": reason} if reason else {})}
    return metric(processor, "nuclio_processor_sink_items_total", **labels)


async def nats_frames(url: str, subject: str, count: int, timeout: float = 15.0) -> list[Any]:
    nc = await nats.connect(url)
    try:
        sub = await nc.subscribe(subject)
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            got.append(await sub.next_msg(timeout=max(0.1, deadline - time.monotonic())))
        return got
    finally:
        await nc.close()


async def mqtt_frames(port: int, topic: str, count: int, timeout: float = 15.0) -> list[Any]:
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        await client.subscribe(topic, qos=1)
        got = []

        async def collect() -> None:
            async for message in client.messages:
                got.append(message)
                if len(got) >= count:
                    return
        await asyncio.wait_for(collect(), timeout)
        return got


def test_frames_arrive_on_a_nats_subject(tmp_path: Path, start_processor: Any) -> None:
    with NatsServer(tmp_path / "nats", jetstream=False) as server, \
            FfmpegMjpegSource(free_port(), rate=10) as camera:
        processor = start_processor(sink_config(camera.url, {"kind": "nats", "attributes": {
            "url": server.url, "subject": "frames.out", "headers": {"camera": "lab"}}}))
        wait_for(lambda: ready(processor)[1]["triggers"]["cam"]["sink"]["connected"], 10,
                 "the sink connected", lambda: processor.logs)
        frames = asyncio.run(nats_frames(server.url, "frames.out", 5))
        for msg in frames:
            assert msg.data.startswith(JPEG_START)
            assert msg.headers["Content-Type"] == "image/jpeg"
            assert msg.headers["camera"] == "lab"
        numbers = [int(m.headers["X-Nuclio-Frame-Num"]) for m in frames]
        assert numbers == sorted(numbers) and len(set(numbers)) == 5
        assert sink_items(processor, "sent") >= 5


def test_frames_arrive_on_an_mqtt_topic(tmp_path: Path, start_processor: Any) -> None:
    with Mosquitto(tmp_path / "mosquitto") as broker, \
            FfmpegMjpegSource(free_port(), rate=10) as camera:
        processor = start_processor(sink_config(camera.url, {"kind": "mqtt", "attributes": {
            "url": broker.url, "topic": "frames/out", "qos": 1, "protocolVersion": 5}}))
        wait_for(lambda: ready(processor)[1]["triggers"]["cam"]["sink"]["connected"], 10,
                 "the sink connected", lambda: processor.logs)
        frames = asyncio.run(mqtt_frames(broker.port, "frames/out", 5))
        for message in frames:
            assert isinstance(message.payload, bytes) and message.payload.startswith(JPEG_START)
            assert message.properties.ContentType == "image/jpeg"
            assert "frame_num" in dict(message.properties.UserProperty)
        assert sink_items(processor, "sent") >= 5


def test_broker_down_drops_are_counted_and_the_trigger_keeps_going(
        tmp_path: Path, start_processor: Any) -> None:
    nats_server = NatsServer(tmp_path / "nats", jetstream=False)
    mosquitto = Mosquitto(tmp_path / "mosquitto")
    with FfmpegMjpegSource(free_port(), rate=10) as camera, \
            FfmpegMjpegSource(free_port(), rate=10) as camera2:  # ffmpeg serves one client
        to_nats = start_processor(sink_config(camera.url, {"kind": "nats", "attributes": {
            "url": nats_server.url, "subject": "frames.out", "reconnectDelay": "200ms",
            "maxReconnectDelay": "500ms"}}))
        to_mqtt = start_processor(sink_config(camera2.url, {
            "kind": "mqtt", "attributes": {"url": mosquitto.url, "topic": "frames/out",
                                           "reconnectDelay": "200ms",
                                           "maxReconnectDelay": "500ms"}}))
        for processor in (to_nats, to_mqtt):
            wait_for(lambda p=processor: sink_items(p, "dropped", "disconnected") >= 5, 20,
                     "drops counted while the broker is down", lambda p=processor: p.logs)
            details = ready(processor)
            assert details[0] == 200  # a sink's broker does not make the trigger unready
            assert details[1]["triggers"]["cam"]["sink"]["connected"] is False
        processed = metric(to_nats, "nuclio_processor_frames_processed_total")
        assert processed >= 5  # the handler ran on the frames the sink could not send
        with nats_server, mosquitto:
            frames = asyncio.run(nats_frames(nats_server.url, "frames.out", 3))
            assert all(m.data.startswith(JPEG_START) for m in frames)
            got = asyncio.run(mqtt_frames(mosquitto.port, "frames/out", 3))
            assert all(m.payload.startswith(JPEG_START) for m in got)
