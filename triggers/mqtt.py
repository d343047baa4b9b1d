"""The ``mqtt`` trigger: subscriptions on an MQTT 3.1.1 or 5 broker, acked after handling.

Built on aiomqtt (asyncio over paho-mqtt, the Eclipse client Nuclio's Go trigger also
uses): paho does the protocol, aiomqtt gives it to asyncio without a thread per
client. paho's *manual acknowledgement* is switched on, so a QoS 1/2 message is
acknowledged (PUBACK/PUBCOMP) only once its handler has returned; a processor that
dies first leaves it unacknowledged and the broker delivers it again when the
session resumes. That needs a persistent session (``cleanSession: false`` with a
fixed ``clientID``, the default when a clientID is given). QoS 0 is at most once.

At most ``numWorkers`` messages are handled at once; the broker's own in-flight
window holds back further QoS 1/2 messages (MQTT 5: Receive Maximum =
``maxQueuedMessages``); QoS 0 messages wait in a queue of ``maxQueuedMessages``
and beyond it are dropped (``reason="mqtt_queue_full"``).
A failed handler's message is still acknowledged: MQTT has no negative
acknowledgement, and an unacknowledged message would only come back after a
reconnect. Messages over ``maxMessageSize`` are acknowledged without running the
handler (``reason="body_too_large"``).

Events: body = the payload, ``topic`` and ``path`` = the message's topic, ``url`` =
the broker URL without credentials, headers = MQTT 5 user properties (and the
content type property as ``Content-Type``), ``fields``: ``qos``, ``retain``,
``message_id``. The handler's return value is not sent anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import aiomqtt
from paho.mqtt.properties import Properties
from pydantic import Field, field_validator

from core.attribute_types import Duration
from core.config import ConfigError
from runtime.backoff import Backoff
from runtime.events import RawEvent, new_event_id
from runtime.pool import WorkerUnavailable
from triggers.base import Trigger, TriggerAttributes, public_url
from triggers.stream_flow import InFlight

_SCHEMES = {"tcp": False, "mqtt": False, "ssl": True, "tls": True, "mqtts": True}
_DEFAULT_PORTS = {False: 1883, True: 8883}


class Subscription(TriggerAttributes):
    topic: str = Field(min_length=1)
    qos: Literal[0, 1, 2] = Field(0, alias="QOS")


class MqttAttributes(TriggerAttributes):
    subscriptions: list[Subscription] = Field(min_length=1)
    clientID: str | None = Field(None, alias="clientId")
    protocolVersion: Literal[4, 5] = 4  # Nuclio's default: MQTT 3.1.1
    username: str | None = None
    password: str | None = None
    cleanSession: bool | None = None  # default: false with a clientID, true without
    sessionExpiry: Duration = Field(3600.0, ge=0)  # MQTT 5 persistent sessions
    keepAlive: Duration = Field(30.0, ge=1)
    connectTimeout: Duration = Field(10.0, gt=0)
    reconnectDelay: Duration = Field(1.0, gt=0)
    reconnectMaxDelay: Duration = Field(30.0, gt=0)
    maxQueuedMessages: int = Field(1000, ge=1)
    maxMessageSize: int | None = Field(None, ge=1)
    tlsCaFile: str | None = None
    tlsInsecure: bool = False

    @field_validator("subscriptions", mode="before")
    @classmethod
    def _lower_keys(cls, value: Any) -> Any:
        if isinstance(value, list):  # Nuclio's decoder matches keys case-insensitively
            return [{str(k).lower() if str(k).lower() in ("topic", "qos") else k: v
                     for k, v in item.items()} if isinstance(item, dict) else item
                    for item in value]
        return value


class _Broker:
    """Where to connect, parsed once from the trigger url (ConfigError when unusable)."""

    def __init__(self, url: str | None, yaml_path: str) -> None:
        text = (url or "").strip()
        path = f"{yaml_path}.url"
        if not text:
            raise ConfigError(f"{path}: required, e.g. 'tcp://127.0.0.1:1883'")
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if parts.scheme not in _SCHEMES or not parts.hostname:
            raise ConfigError(f"{path}: expected tcp://host:port or ssl://host:port, "
                              f"got {public_url(text)!r}")
        self.tls = _SCHEMES[parts.scheme]
        self.host = parts.hostname
        self.port = port or _DEFAULT_PORTS[self.tls]
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.public = public_url(text)


class MqttTrigger(Trigger):
    kind = "mqtt"
    Attributes = MqttAttributes
    attributes: MqttAttributes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        attrs = self.attributes
        self.broker = _Broker(self.config.url, self.config.yaml_path)
        self.client_id = attrs.clientID or f"nuclio-{self.name}-{uuid.uuid4().hex[:8]}"
        self.clean = attrs.cleanSession if attrs.cleanSession is not None \
            else attrs.clientID is None
        # Credentials: attributes, else Nuclio's trigger-level username/password, else the URL.
        self.username = attrs.username or self.config.username or self.broker.username
        self.password = attrs.password or self.config.password or self.broker.password
        self._secrets = [s for s in (self.password, self.broker.password) if s]
        self.inflight = InFlight(self.pool.size)
        self.state = "connecting"
        self.last_error: str | None = None
        self.connects = 0
        self._generation = 0  # which connection a message came on (acks go to it only)
        self._client: aiomqtt.Client | None = None
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        return self.state == "connected"

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {
            "broker": {"url": self.broker.public, "state": self.state,
                       "connects": self.connects},
            "client_id": self.client_id, "clean_session": self.clean,
            "in_flight": self.inflight.count}
        if self.last_error and self.state != "connected":
            details["broker"]["error"] = self.last_error
        return details

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())
        self.logger.info_with("MQTT trigger started", trigger=self.name,
                              url=self.broker.public, client_id=self.client_id,
                              subscriptions=[s.topic for s in self.attributes.subscriptions],
                              workers=self.pool.size)

    async def stop_accepting(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        await self.inflight.idle(self.config.termination_timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.state = "closed"

    # -- connection ----------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _new_client(self) -> aiomqtt.Client:
        attrs, broker = self.attributes, self.broker
        tls_context = None
        if broker.tls:
            tls_context = ssl.create_default_context(cafile=attrs.tlsCaFile)
            if attrs.tlsInsecure:
                tls_context.check_hostname = False
                tls_context.verify_mode = ssl.CERT_NONE
        v5 = attrs.protocolVersion == 5
        options: dict[str, Any] = {}
        if v5:
            options["clean_start"] = self.clean
            if not self.clean:
                properties = Properties(aiomqtt.client.mqtt.PacketTypes.CONNECT)
                properties.SessionExpiryInterval = int(attrs.sessionExpiry)
                options["properties"] = properties
        else:
            options["clean_session"] = self.clean
        metrics, limit = self.metrics, attrs.maxQueuedMessages
        if v5:  # the broker sends at most this many unacknowledged QoS 1/2 messages
            properties = options.setdefault(
                "properties", Properties(aiomqtt.client.mqtt.PacketTypes.CONNECT))
            properties.ReceiveMaximum = min(65535, limit)

        class CountingQueue(asyncio.Queue[aiomqtt.Message]):
            """Bounds QoS 0 only: a QoS 1/2 message dropped here would never be acked
            (the broker bounds those by its in-flight window)."""

            def put_nowait(self, item: aiomqtt.Message) -> None:
                if item.qos == 0 and self.qsize() >= limit:
                    metrics.rejected("mqtt_queue_full")
                    raise asyncio.QueueFull
                super().put_nowait(item)

        client = aiomqtt.Client(
            broker.host, broker.port, username=self.username, password=self.password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            keepalive=int(attrs.keepAlive), timeout=attrs.connectTimeout,
            tls_context=tls_context, queue_type=CountingQueue,
            **options)
        # paho acknowledges QoS 1/2 on receipt unless told otherwise; we ack after handling.
        client._client.manual_ack_set(True)
        return client

    async def _run(self) -> None:
        attrs = self.attributes
        backoff = Backoff(attrs.reconnectDelay, attrs.reconnectMaxDelay)
        while not self._stopping.is_set():
            try:
                client = self._new_client()
                async with client:
                    self._generation += 1
                    self._client = client
                    topics: list[tuple[str, int]] = [(s.topic, s.qos) for s in attrs.subscriptions]
                    await client.subscribe(topics)
                    self.state = "connected"
                    self.connects += 1
                    backoff.reset()
                    self.logger.info_with("Connected to MQTT broker", trigger=self.name,
                                          url=self.broker.public, client_id=self.client_id)
                    await self._consume(client, self._generation)
            except aiomqtt.MqttError as exc:
                self._failed(exc, backoff.attempts)
            finally:
                self._client = None
            if self._stopping.is_set():
                return
            self.state = "connecting" if self.state != "refused" else "refused"
            if await backoff.wait(self._stopping):
                return

    def _failed(self, exc: Exception, attempts: int) -> None:
        message = self._redact(str(exc) or type(exc).__name__)
        refused = isinstance(exc, aiomqtt.MqttCodeError) and self.state != "connected"
        self.last_error = message
        self.state = "refused" if refused else "connecting"
        if refused:
            self.logger.error_with("MQTT broker refused the connection", trigger=self.name,
                                   url=self.broker.public, client_id=self.client_id,
                                   error=message)
        elif attempts < 1:
            self.logger.warn_with("MQTT broker not reachable, retrying", trigger=self.name,
                                  url=self.broker.public, error=message)

    async def _consume(self, client: aiomqtt.Client, generation: int) -> None:
        inflight = self.inflight
        stopping = asyncio.get_running_loop().create_task(self._stopping.wait())
        try:
            messages = client.messages.__aiter__()
            while True:
                if inflight.count >= inflight.limit:
                    await inflight.wait_free()
                getting = asyncio.ensure_future(messages.__anext__())
                await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not getting.done():
                    getting.cancel()
                    with contextlib.suppress(BaseException):
                        await getting
                    # Stopping: keep the connection for the acks still to be sent.
                    await inflight.idle(self.config.termination_timeout)
                    return
                message = getting.result()
                inflight.spawn(self._handle(client, generation, message))
        finally:
            stopping.cancel()

    # -- messages --------------------------------------------------------------------------
    def _ack(self, client: aiomqtt.Client, generation: int, message: aiomqtt.Message) -> None:
        if message.qos and generation == self._generation:
            with contextlib.suppress(Exception):
                client._client.ack(message.mid, message.qos)

    async def _handle(self, client: aiomqtt.Client, generation: int,
                      message: aiomqtt.Message) -> None:
        started = time.perf_counter()
        payload = message.payload
        body = payload if isinstance(payload, bytes) else str(payload or "").encode()
        limit = self.attributes.maxMessageSize
        if limit is not None and len(body) > limit:
            self.metrics.rejected("body_too_large")
            self.logger.warn_with("MQTT message over maxMessageSize: acknowledged, not handled",
                                  trigger=self.name, topic=str(message.topic), size=len(body))
            self._ack(client, generation, message)
            return
        raw = self._event(message, body)
        try:
            await self.pool.submit(raw)
        except WorkerUnavailable:
            # Not handled, so not acked: the broker delivers it again when the session
            # resumes (QoS 1/2); QoS 0 is lost, as QoS 0 may be.
            self.metrics.rejected("no_worker")
            self.logger.warn_with("MQTT message left unacknowledged: no free worker",
                                  trigger=self.name, topic=raw.path)
            return
        except Exception:  # the pool is stopping: leave it unacked, the broker redelivers
            return
        self._ack(client, generation, message)
        self.metrics.observe_latency(time.perf_counter() - started)

    def _event(self, message: aiomqtt.Message, body: bytes) -> RawEvent:
        topic = str(message.topic)
        headers: dict[str, Any] = {}
        content_type = ""
        properties = message.properties
        if properties is not None:
            for key, value in getattr(properties, "UserProperty", None) or []:
                headers[str(key)] = value
            content_type = getattr(properties, "ContentType", "") or ""
            if content_type:
                headers["Content-Type"] = content_type
        fields = {"qos": message.qos, "retain": bool(message.retain),
                  "message_id": message.mid}
        return RawEvent(new_event_id(), body, content_type, headers, fields, "POST", topic,
                        self.broker.public, time.time(), self.kind, self.name, None,
                        {"topic": topic})
