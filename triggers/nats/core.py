"""The ``nats`` trigger: NATS core subjects, optionally in a queue group, with replies.

Subscribes to ``topic`` (wildcards ``*`` and ``>`` allowed) in queue group
``queueName`` when one is given (replicas in one group share the messages, each
message goes to one of them); without it every replica gets every message, which
is what Nuclio's trigger does too. Each message is an event (see ``events``;
``fields["reply"]`` is the reply subject). When a message has a reply subject
(``nats req``, ``nc.request``), the handler's answer is published to it: the body,
its content type and headers as NATS headers; a failure (status >= 400) adds
``Nats-Service-Error-Code`` and ``Nats-Service-Error`` (the NATS micro convention).

NATS core is at most once: a message whose handler fails is not delivered again.
At most ``numWorkers`` messages are handled at once; others wait in the
subscription's bounded queue (``maxPendingMessages``); beyond it nats-py drops
them (a slow consumer), counted as ``reason="slow_consumer"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import SlowConsumerError
from pydantic import Field, field_validator

from runtime.pool import WorkerUnavailable
from runtime.responses import RawResponse
from triggers.base import Trigger
from triggers.nats.connection import NatsConnectionAttributes, NatsSupervisor
from triggers.nats.events import raw_event
from triggers.stream_flow import InFlight

_SUBJECT = re.compile(r"^[^\s]+$")


class NatsAttributes(NatsConnectionAttributes):
    topic: str
    queueName: str | None = None
    maxPendingMessages: int = Field(65536, ge=1)

    @field_validator("topic")
    @classmethod
    def _subject(cls, value: str) -> str:
        tokens = value.split(".")
        if not _SUBJECT.match(value) or any(not t for t in tokens) or \
                any(">" in t and (t != ">" or i != len(tokens) - 1) for i, t in enumerate(tokens)):
            raise ValueError("expected a NATS subject such as 'orders.*' or 'orders.>'")
        return value


def expand_queue_name(template: str, trigger_id: str) -> str:
    """Nuclio's template placeholders ``{{.Namespace}}``, ``{{.Name}}``, ``{{.Id}}``."""
    values = {"Namespace": os.environ.get("NUCLIO_NAMESPACE", "default"),
              "Name": os.environ.get("NUCLIO_FUNCTION_NAME", ""), "Id": trigger_id}
    return re.sub(r"\{\{\s*\.(Namespace|Name|Id)\s*\}\}", lambda m: values[m.group(1)],
                  template)


class NatsTrigger(Trigger):
    kind = "nats"
    Attributes = NatsAttributes
    attributes: NatsAttributes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.supervisor = NatsSupervisor(self.config, self.attributes, self.logger,
                                         self._consume, on_error=self._on_error)
        self.inflight = InFlight(self.pool.size)
        queue = self.attributes.queueName
        self.queue = expand_queue_name(queue, self.config.key) if queue else ""
        self._stopping = asyncio.Event()
        self.replies = 0

    @property
    def ready(self) -> bool:
        return self.supervisor.connected

    def status(self) -> dict[str, Any]:
        return {"broker": self.supervisor.status(), "topic": self.attributes.topic,
                "queue": self.queue, "in_flight": self.inflight.count, "replies": self.replies}

    async def start(self) -> None:
        self.supervisor.start()
        self.logger.info_with("NATS trigger started", trigger=self.name,
                              url=self.supervisor.public_url, topic=self.attributes.topic,
                              queue=self.queue, workers=self.pool.size)

    async def stop_accepting(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        await self.inflight.idle(self.config.termination_timeout)
        await self.supervisor.stop()

    def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, SlowConsumerError):
            self.metrics.rejected("slow_consumer")

    async def _consume(self, client: Client) -> None:
        inflight = self.inflight

        async def take(msg: Msg) -> None:
            # nats-py calls this for one message at a time: waiting here for a free
            # slot leaves the rest in the subscription's bounded queue.
            if inflight.count >= inflight.limit:
                await inflight.wait_free()
            inflight.spawn(self._handle(client, msg))

        sub = await client.subscribe(self.attributes.topic, queue=self.queue, cb=take,
                                     pending_msgs_limit=self.attributes.maxPendingMessages)
        closed = self.supervisor.closed
        stopping = asyncio.get_running_loop().create_task(self._stopping.wait())
        closing = asyncio.get_running_loop().create_task(closed.wait())
        try:
            await asyncio.wait({stopping, closing}, return_when=asyncio.FIRST_COMPLETED)
            if closed.is_set():
                return
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            await closed.wait()  # keep the connection for replies still to come
        finally:
            stopping.cancel()
            closing.cancel()

    async def _handle(self, client: Client, msg: Msg) -> None:
        started = time.perf_counter()
        max_size = self.attributes.maxMessageSize
        if max_size is not None and len(msg.data) > max_size:
            self.metrics.rejected("body_too_large")
            if msg.reply:
                await self._reply(client, msg.reply, _too_large(len(msg.data), max_size))
            return
        raw = raw_event(msg, self.kind, self.name, self.supervisor.public_url,
                        {"reply": msg.reply} if msg.reply else {})
        try:
            result: RawResponse = await self.pool.submit(raw)  # type: ignore[assignment]
        except WorkerUnavailable as exc:
            self.metrics.rejected("no_worker")
            result = RawResponse(503, {}, str(exc).encode(), "text/plain")
        except Exception as exc:  # e.g. the pool is stopping
            result = RawResponse(503, {}, (str(exc) or "unavailable").encode(), "text/plain")
        if msg.reply:
            await self._reply(client, msg.reply, result)
        self.metrics.observe_latency(time.perf_counter() - started)

    async def _reply(self, client: Client, subject: str, result: RawResponse) -> None:
        headers: dict[str, str] | None = None
        if result.headers or result.status >= 400 or result.content_type:
            headers = {str(k): str(v) for k, v in result.headers.items()}
            if result.content_type:
                headers.setdefault("Content-Type", result.content_type)
            if result.status >= 400:
                headers["Nats-Service-Error-Code"] = str(result.status)
                headers["Nats-Service-Error"] = result.body[:200].decode("utf-8", "replace")
        try:
            await client.publish(subject, result.body, headers=headers)
            self.replies += 1
        except Exception as exc:  # a lost reply is the requester's timeout
            self.logger.debug_with("NATS reply not sent", trigger=self.name,
                                   error=str(exc) or type(exc).__name__)


def _too_large(size: int, limit: int) -> RawResponse:
    return RawResponse(413, {}, f"message of {size} bytes over maxMessageSize {limit}".encode(),
                       "text/plain")
