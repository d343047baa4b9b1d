"""Helpers for the stream-trigger tests: configs, handler records, NATS client calls."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import nats
import requests
from nats.js.api import ConsumerInfo, StreamConfig

from test.conftest import function_config
from test.support import wait_for  # noqa: F401 - re-exported for the stream tests


def stream_config(triggers: dict[str, Any], workdir: Path, *,
                  handler: str = "stream_record:handler", event_timeout: str | None = None,
                  worker_kind: str | None = None
                  ) -> dict[str, Any]:
    """A function.yaml with only ``triggers`` (no default http) and the record handler
    writing to ``workdir``."""
    env = [{"name": "STREAM_LOG", "value": str(workdir / "records.jsonl")},
           {"name": "STREAM_MARKS", "value": str(workdir / "marks")}]
    config = function_config(handler, triggers=triggers, env=env, event_timeout=event_timeout,
                             runtime_attributes={"workerKind": worker_kind} if worker_kind
                             else None)
    config["spec"]["disableDefaultHTTPTrigger"] = True
    return config


def records(workdir: Path) -> list[dict[str, Any]]:
    path = workdir / "records.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def handled_ids(workdir: Path) -> list[str]:
    return [r["body"].rsplit(":", 1)[-1] for r in records(workdir)]




def ready(processor: Any) -> tuple[int, dict[str, Any]]:
    response = requests.get(processor.url(processor.health_port, "/ready"), timeout=2)
    return response.status_code, response.json()


def ready_when_up(processor: Any) -> tuple[int, dict[str, Any]] | None:
    """``ready`` once the health server answers; None before."""
    try:
        return ready(processor)
    except requests.RequestException:
        return None


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def add_stream(url: str, name: str, subjects: list[str]) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().add_stream(StreamConfig(name=name, subjects=subjects))
    finally:
        await nc.close()


async def js_publish(url: str, items: list[tuple[str, bytes]]) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        futures = [await js.publish_async(subject, body) for subject, body in items]
        await asyncio.gather(*futures)
    finally:
        await nc.close()


async def consumer_info(url: str, stream: str, consumer: str) -> ConsumerInfo:
    nc = await nats.connect(url)
    try:
        return await nc.jetstream().consumer_info(stream, consumer)
    finally:
        await nc.close()


async def publish(url: str, items: list[tuple[str, bytes]]) -> None:
    nc = await nats.connect(url)
    try:
        for subject, body in items:
            await nc.publish(subject, body)
        await nc.flush()
    finally:
        await nc.close()


def metric(processor: Any, name: str, **labels: str) -> float:
    """A metric's value, 0 while it has not been exported yet."""
    try:
        return float(processor.metric(name, **labels))
    except AssertionError:
        return 0.0


async def mqtt_publish(port: int, items: list[tuple[str, bytes, int]], *, retain: bool = False,
                       protocol: int = 4, user_properties: list[tuple[str, str]] | None = None,
                       username: str | None = None, password: str | None = None,
                       tls_context: Any = None) -> None:
    """Publishes ``(topic, payload, qos)`` items to a broker on 127.0.0.1 and waits for
    the broker's acknowledgements."""
    import aiomqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    version = aiomqtt.ProtocolVersion.V5 if protocol == 5 else aiomqtt.ProtocolVersion.V311
    properties = None
    if user_properties:
        properties = Properties(PacketTypes.PUBLISH)
        properties.UserProperty = user_properties
    async with aiomqtt.Client("127.0.0.1", port, protocol=version, username=username,
                              password=password, tls_context=tls_context) as client:
        for topic, payload, qos in items:
            await client.publish(topic, payload, qos=qos, retain=retain,
                                 properties=properties)
