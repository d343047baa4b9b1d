"""The ``nats-jetstream`` trigger: a durable pull consumer, acknowledged per message.

Delivery is at least once and survives ``kill -9`` of the processor or the broker:
- a message is **acked only after the handler succeeded** (``stream_flow.handled``);
  a failure status, an exception (500), a crashed worker (500), a timeout (408) or no
  free worker **naks** it with a back-off growing with its delivery count
  (``nakDelay`` doubling to ``nakMaxDelay``), so JetStream delivers it again, up to
  the consumer's ``maxDeliver``;
- a message whose handler runs longer than ``ackProgressInterval`` (a third of
  ``ackWait`` by default) gets ``in_progress()`` every such interval, so a slow
  handler is not redelivered to another replica while it still runs;
- messages are fetched only for free worker slots: at most ``numWorkers`` per
  processor are in flight, the rest wait in the stream. Several replicas with the
  same ``consumer`` name pull from one durable consumer and share the messages;
- a processor killed mid-message never acked it: JetStream redelivers it after
  ``ackWait``.

Events: see ``events``; ``fields``: ``delivery_count`` (1 on first delivery),
``stream``, ``consumer``, ``stream_sequence`` (also ``event.offset``) and
``consumer_sequence``. A message's reply subject is JetStream's ack subject, so the
handler's return value goes nowhere (only its status decides ack or nak).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from typing import Any, Literal

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import api
from nats.js.errors import FetchTimeoutError
from pydantic import Field, field_validator

from core.attribute_types import Duration
from core.config import ConfigError
from runtime.pool import WorkerUnavailable
from triggers.base import Trigger
from triggers.nats.connection import NatsConnectionAttributes, NatsSupervisor
from triggers.nats.events import raw_event
from triggers.stream_flow import InFlight, handled

_NAME = re.compile(r"^[^.*>\s]+$")
_DELIVER = {"all": api.DeliverPolicy.ALL, "new": api.DeliverPolicy.NEW,
            "last": api.DeliverPolicy.LAST}


class JetStreamAttributes(NatsConnectionAttributes):
    stream: str
    consumer: str | None = None  # durable name; default <function>-<trigger>
    topic: str | None = None  # filter subject inside the stream
    ackWait: Duration = Field(30.0, gt=0)
    maxDeliver: int = Field(-1, ge=-1)
    maxAckPending: int = Field(1000, ge=1)
    ackProgressInterval: Duration | None = Field(None, gt=0)
    nakDelay: Duration = Field(1.0, ge=0)
    nakMaxDelay: Duration = Field(30.0, ge=0)
    fetchTimeout: Duration = Field(1.0, gt=0)
    deliverPolicy: Literal["all", "new", "last"] = "all"
    explicitAckMode: Literal["disable"] = "disable"

    @field_validator("stream", "consumer")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("expected a JetStream name without spaces, '.', '*' or '>'")
        return value

    @field_validator("explicitAckMode", mode="before")
    @classmethod
    def _ack_mode(cls, value: Any) -> Any:
        if value in ("enable", "explicitOnly"):
            raise ValueError(f"{value!r} is not supported (handlers cannot ack themselves "
                             f"here); use 'disable': the trigger acks after the handler")
        return value


def nak_delay(first: float, cap: float, delivered: int) -> float:
    """Redelivery delay after the ``delivered``-th failed delivery: doubling from
    ``first``, at most ``cap``."""
    return min(cap, first * (2 ** min(max(delivered, 1) - 1, 16)))


def _default_consumer(trigger_name: str) -> str:
    function = os.environ.get("NUCLIO_FUNCTION_NAME", "nuclio")
    return re.sub(r"[.*>\s]", "_", f"{function}-{trigger_name}")


class JetStreamTrigger(Trigger):
    kind = "nats-jetstream"
    Attributes = JetStreamAttributes
    attributes: JetStreamAttributes

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        attrs = self.attributes
        mode = self.config.explicit_ack_mode  # Nuclio's trigger-level key
        if mode not in (None, "", "disable"):
            raise ConfigError(f"{self.config.yaml_path}.explicitAckMode: {mode!r} is not "
                              f"supported (handlers cannot ack themselves here); use "
                              f"'disable': the trigger acks after the handler")
        self.supervisor = NatsSupervisor(self.config, attrs, self.logger, self._consume)
        self.inflight = InFlight(self.pool.size)
        self.consumer = attrs.consumer or _default_consumer(self.name)
        self._progress_every = attrs.ackProgressInterval or attrs.ackWait / 3
        # id(message) -> (message, when it started or last said "in progress")
        self._running: dict[int, tuple[Msg, float]] = {}
        self._stopping = asyncio.Event()
        self.acked = self.naked = self.progressed = 0
        self._consumer_error: str | None = None
        self._bound = False  # the pull subscription exists on the current connection

    @property
    def ready(self) -> bool:
        return self.supervisor.connected and self._bound

    def status(self) -> dict[str, Any]:
        details = {"broker": self.supervisor.status(), "stream": self.attributes.stream,
                   "consumer": self.consumer, "in_flight": self.inflight.count,
                   "acked": self.acked, "naked": self.naked}
        if self._consumer_error:
            details["error"] = self._consumer_error
        return details

    async def start(self) -> None:
        self.supervisor.start()
        self._ticker = asyncio.get_running_loop().create_task(self._heartbeats())
        self.logger.info_with("JetStream trigger started", trigger=self.name,
                              url=self.supervisor.public_url, stream=self.attributes.stream,
                              consumer=self.consumer, workers=self.pool.size)

    async def stop_accepting(self) -> None:
        self._stopping.set()

    async def close(self) -> None:
        await self.inflight.idle(self.config.termination_timeout)
        self._ticker.cancel()
        await self.supervisor.stop()

    # -- consuming -----------------------------------------------------------------------
    def _consumer_config(self) -> api.ConsumerConfig:
        attrs = self.attributes
        return api.ConsumerConfig(
            durable_name=self.consumer, ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=_DELIVER[attrs.deliverPolicy], ack_wait=attrs.ackWait,
            max_deliver=attrs.maxDeliver, max_ack_pending=attrs.maxAckPending,
            filter_subject=attrs.topic or None)

    async def _consume(self, client: Client) -> None:
        attrs = self.attributes
        js = client.jetstream(timeout=max(2.0, attrs.connectTimeout))
        try:
            sub = await js.pull_subscribe(attrs.topic or "", durable=self.consumer,
                                          stream=attrs.stream, config=self._consumer_config(),
                                          pending_msgs_limit=self.pool.size * 4 + 16)
        except Exception as exc:
            self._consumer_error = f"cannot bind consumer {self.consumer!r} on stream " \
                                   f"{attrs.stream!r}: {exc or type(exc).__name__}"
            raise
        self._consumer_error = None
        self._bound = True
        try:
            await self._pull(client, sub)
        finally:
            self._bound = False

    async def _pull(self, client: Client, sub: Any) -> None:
        attrs = self.attributes
        closed = self.supervisor.closed
        while not self._stopping.is_set() and not closed.is_set():
            free = await self.inflight.wait_free()
            if self._stopping.is_set():
                break
            try:
                msgs = await sub.fetch(free, timeout=attrs.fetchTimeout)
            except (FetchTimeoutError, TimeoutError):
                continue
            except Exception as exc:  # broker gone; keep trying unless closed
                if client.is_closed:
                    return
                self.logger.debug_with("JetStream fetch failed", trigger=self.name,
                                       error=str(exc) or type(exc).__name__)
                await asyncio.sleep(min(1.0, attrs.fetchTimeout))
                continue
            for msg in msgs:
                self.inflight.spawn(self._handle(msg))
        if self._stopping.is_set():
            await self._stopped(closed)

    async def _stopped(self, closed: asyncio.Event) -> None:
        """Holds the connection open while the last messages are acked."""
        await closed.wait()

    async def _handle(self, msg: Msg) -> None:
        started = time.perf_counter()
        attrs = self.attributes
        meta = msg.metadata
        delivered = meta.num_delivered
        max_size = attrs.maxMessageSize
        if max_size is not None and len(msg.data) > max_size:
            self.metrics.rejected("body_too_large")
            self.logger.warn_with("JetStream message over maxMessageSize: terminated",
                                  trigger=self.name, subject=msg.subject, size=len(msg.data))
            await self._settle(msg.term())
            return
        fields = {"delivery_count": delivered, "stream": meta.stream,
                  "consumer": meta.consumer, "stream_sequence": meta.sequence.stream,
                  "consumer_sequence": meta.sequence.consumer}
        raw = raw_event(msg, self.kind, self.name, self.supervisor.public_url, fields,
                        meta.sequence.stream)
        self._running[id(msg)] = (msg, time.monotonic())
        try:
            result = await self.pool.submit(raw)
            status = result.status  # type: ignore[union-attr]
        except WorkerUnavailable:
            self.metrics.rejected("no_worker")
            status = 503
        except Exception:  # e.g. the pool is stopping: deliver again later
            status = 503
        finally:
            self._running.pop(id(msg), None)
        if handled(status):
            self.acked += 1
            await self._settle(msg.ack())
            self.metrics.observe_latency(time.perf_counter() - started)
            return
        self.naked += 1
        if attrs.maxDeliver > 0 and delivered >= attrs.maxDeliver:
            self.metrics.rejected("max_deliver")
            self.logger.error_with("JetStream message failed its last delivery",
                                   trigger=self.name, subject=msg.subject, status=status,
                                   delivery_count=delivered, sequence=meta.sequence.stream)
        else:
            self.logger.debug_with("JetStream message not handled: nak", trigger=self.name,
                                   status=status, delivery_count=delivered)
        await self._settle(msg.nak(delay=self._nak_delay(delivered)))

    def _nak_delay(self, delivered: int) -> float:
        return nak_delay(self.attributes.nakDelay, self.attributes.nakMaxDelay, delivered)

    async def _settle(self, reply: Any) -> None:
        """Sends an ack/nak/term; a lost connection means JetStream redelivers later."""
        with contextlib.suppress(Exception):
            await reply

    async def _heartbeats(self) -> None:
        """Tells JetStream about handlers still running, before ackWait runs out."""
        every = self._progress_every
        while True:
            await asyncio.sleep(every / 2)
            now = time.monotonic()
            for key, (msg, since) in list(self._running.items()):
                if now - since >= every and key in self._running:
                    self._running[key] = (msg, now)
                    self.progressed += 1
                    await self._settle(msg.in_progress())
