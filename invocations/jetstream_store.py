"""``CallStore`` on NATS JetStream, for several processor replicas sharing the work.

Every replica pulls from one durable consumer per function stream (a work
queue), so a call is handed to one replica at a time; while the handler runs the
dispatcher sends ``in_progress()`` every ``ackWait/3`` so a slow call is never
redelivered to a second replica; retries are ``nak(delay)``; a replica that dies
leaves its unacknowledged calls to be redelivered to the others after ``ackWait``.
The call record (state, attempts, response) lives in a key-value bucket, so any
replica answers a status lookup. NATS down at start: the processor serves sync
traffic, async requests get 503 and ``/ready`` says why, until NATS is reachable.
Names: see ``invocations.jetstream_codec``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from typing import Any

import nats
from nats.js import api
from nats.js.errors import KeyWrongLastSequenceError, NotFoundError

from invocations.config import AsyncSettings
from invocations.jetstream_codec import callback_stream, decode, encode, function_stream, kv_key
from invocations.store import (
    FINAL_STATES,
    Accepted,
    Call,
    CallbackState,
    Outcome,
    State,
    StoreUnavailable,
    now,
)
from runtime.logger import Logger


def _public(url: str) -> str:
    """The URL without credentials, for /ready and logs."""
    head, sep, tail = url.rpartition("@")
    return (url.split("://", 1)[0] + "://" + tail) if sep and "://" in head else url


class JetStreamStore:
    backend = "nats"

    def __init__(self, settings: AsyncSettings, yaml_path: str, logger: Logger) -> None:
        self._settings = settings
        self._nats = settings.nats
        self._logger = logger
        self.heartbeat_interval = max(0.1, self._nats.ackWait / 3.0)
        self._nc: Any = None
        self._js: Any = None
        self._kv: Any = None
        self._dead: Any = None
        self._subs: dict[str, Any] = {}
        self._cb_sub: Any = None
        self._msgs: dict[str, Any] = {}  # call id -> the message being worked on
        self._cb_msgs: dict[str, Any] = {}
        self._depth: dict[str, tuple[float, int]] = {}
        self._ready = False
        self._reason: str | None = "connecting"
        self._task: asyncio.Task[None] | None = None
        self._setup_lock = asyncio.Lock()

    # -- life cycle ------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self._ready and self._nc is not None and self._nc.is_connected

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.backend, "url": _public(self._nats.url),
                               "stream": self._nats.stream, "consumer": self._nats.consumer,
                               "state": "ok" if self.available else "unavailable"}
        if not self.available:
            out["reason"] = self._reason or "disconnected from NATS (reconnecting)"
        return out

    async def start(self) -> None:
        """Gives the first connection a moment (so a processor that is ready with NATS up
        accepts at once), then leaves the rest to the background."""
        self._task = asyncio.create_task(self._connect_forever())
        await asyncio.wait({self._task}, timeout=self._nats.connectTimeout + 1.5)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()

    async def _connect_forever(self) -> None:
        delay = 0.2
        while True:
            try:
                await self._connect()
                self._reason = None
                self._ready = True
                self._logger.info_with("Async store connected to NATS",
                                       url=_public(self._nats.url))
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not isinstance(exc, TimeoutError) or not self._reason or \
                        not self._reason.startswith("cannot use"):
                    self._reason = f"cannot use NATS at {_public(self._nats.url)}: " \
                                   f"{type(exc).__name__}: {exc}"
                if self._nc is not None:
                    with contextlib.suppress(Exception):
                        await self._nc.close()
                    self._nc = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _connect(self) -> None:
        async def disconnected() -> None:
            self._logger.warn_with("Async store lost NATS; reconnecting")

        async def error(exc: Exception) -> None:  # nats-py would print a traceback each time
            self._reason = f"cannot use NATS at {_public(self._nats.url)}: " \
                           f"{type(exc).__name__}: {exc}"

        # With endless reconnects nats-py also retries the first connect for ever: bound it,
        # so that /ready can say why and the loop above keeps trying.
        async with asyncio.timeout(self._nats.connectTimeout + 1.0):
            self._nc = await nats.connect(
                self._nats.url, connect_timeout=self._nats.connectTimeout,
                allow_reconnect=True, max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                disconnected_cb=disconnected, error_cb=error)
        self._js = self._nc.jetstream(timeout=5.0)
        keep = self._settings.retention
        self._kv = await self._bucket(self._nats.bucket, keep.finished)
        self._dead = await self._bucket(f"{self._nats.bucket}-dead", 0.0)
        name, subject = callback_stream(self._nats.stream)
        await self._stream(name, subject)
        self._cb_sub = await self._js.pull_subscribe(
            subject, durable=f"{self._nats.consumer}-_callbacks", stream=name,
            config=self._consumer_config())

    async def _bucket(self, name: str, ttl: float) -> Any:
        try:
            return await self._js.key_value(name)
        except Exception:  # BucketNotFoundError
            return await self._js.create_key_value(api.KeyValueConfig(
                bucket=name, history=1, ttl=ttl or None, storage=api.StorageType.FILE))

    async def _stream(self, name: str, subject: str) -> None:
        try:
            await self._js.stream_info(name)
        except NotFoundError:
            await self._js.add_stream(api.StreamConfig(
                name=name, subjects=[subject], retention=api.RetentionPolicy.WORK_QUEUE,
                storage=api.StorageType.FILE, duplicate_window=120.0))

    def _consumer_config(self) -> api.ConsumerConfig:
        return api.ConsumerConfig(ack_policy=api.AckPolicy.EXPLICIT, ack_wait=self._nats.ackWait,
                                  max_deliver=-1, max_ack_pending=10_000)

    async def _queue(self, function: str) -> Any:
        sub = self._subs.get(function)
        if sub is not None:
            return sub
        async with self._setup_lock:
            if function not in self._subs:
                name, subject = function_stream(self._nats.stream, function)
                await self._stream(name, subject)
                self._subs[function] = await self._js.pull_subscribe(
                    subject, durable=self._nats.consumer, stream=name,
                    config=self._consumer_config())
        return self._subs[function]

    def _check(self) -> None:
        if not self.available:
            raise StoreUnavailable(self.status().get("reason", "NATS unavailable"))

    async def _put(self, call: Call) -> None:
        await self._kv.put(kv_key(call.id), encode(call))

    # -- CallStore -------------------------------------------------------------------
    async def accept(self, call: Call, max_queued: int) -> tuple[Accepted, Call]:
        self._check()
        try:
            await self._queue(call.function)
            if await self.depth(call.function) >= max_queued:
                return "full", call
            try:
                await self._kv.create(kv_key(call.id), encode(call))
            except KeyWrongLastSequenceError:
                known = await self.get(call.id)
                if known is None:
                    raise StoreUnavailable("the call record vanished") from None
                return ("duplicate" if known.digest == call.digest else "conflict"), known
            _, subject = function_stream(self._nats.stream, call.function)
            try:
                await self._js.publish(subject, call.id.encode(), headers={"Nats-Msg-Id": call.id})
            except Exception:
                with contextlib.suppress(Exception):
                    await self._kv.delete(kv_key(call.id))
                raise
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from None
        self._bump(call.function)
        return "new", call

    def _bump(self, function: str) -> None:
        at, n = self._depth.get(function, (0.0, 0))
        self._depth[function] = (at, n + 1)

    async def claim(self, function: str, limit: int) -> tuple[list[Call], float | None]:
        if not self.available:
            await asyncio.sleep(0.5)
            return [], 0.5
        msgs = await _fetch(await self._queue(function), limit)
        if not msgs:
            return [], 0.0
        calls = []
        for msg in msgs:
            call = await self.get(msg.data.decode())
            if call is None or call.state in FINAL_STATES:
                # Done already: a redelivery after the outcome was stored but the ack (or
                # the callback's publish) was lost. Publishing again is de-duplicated.
                if call is not None and call.callback_state == "pending":
                    await self._publish_callback(call)
                await msg.ack()
                continue
            call.attempts = msg.metadata.num_delivered
            if call.attempts > call.max_attempts:  # crashed on its last attempt
                call.state, call.status, call.finished_at = "dead", 503, now()
                call.callback_state = "pending" if call.callback_url else "none"
                await self._store_final(call, msg)
                continue
            call.state, call.started_at = "running", now()
            await self._put(call)
            self._msgs[call.id] = msg
            calls.append(call)
        return calls, 0.0

    async def heartbeat(self, call: Call) -> None:
        msg = self._msgs.get(call.id)
        if msg is not None:
            await msg.in_progress()

    async def record(self, call: Call, outcome: Outcome, state: State, due_in: float) -> None:
        self._check()
        msg = self._msgs.get(call.id)  # kept until recorded: the dispatcher may try again
        latest = await self.get(call.id)
        if state == "retrying" and latest is not None and latest.cancel_requested:
            state = "cancelled"
        dropped = len(outcome.body) > self._settings.retention.maxResultBytes
        call.state, call.status, call.duration = state, outcome.status, outcome.duration
        call.resp_headers, call.resp_content_type = outcome.headers, outcome.content_type
        call.resp_body, call.resp_dropped = (None if dropped else outcome.body), dropped
        call.cancel_requested = bool(latest and latest.cancel_requested)
        if state == "retrying":
            call.due_at = now() + due_in
            await self._put(call)
            if msg is not None:
                await msg.nak(delay=due_in)
            self._msgs.pop(call.id, None)
            return
        call.finished_at = now()
        call.callback_state = "pending" if call.callback_url and state != "cancelled" else "none"
        await self._store_final(call, msg)
        self._msgs.pop(call.id, None)

    async def _store_final(self, call: Call, msg: Any) -> None:
        """Stores a call in its final state. A dead call joins its function's bounded
        dead-letter list (trimmed) before its state is stored: once the call reads as
        dead, the list holds it and no more than the bound, as the SQLite store's single
        transaction gives (stored the other way round, a client could list one too many)."""
        if call.state == "dead":
            await self._dead.put(f"{call.function}.{kv_key(call.id)}", str(now()).encode())
            with contextlib.suppress(Exception):
                await self._trim_dead(call.function)
        await self._put(call)
        at, n = self._depth.get(call.function, (0.0, 0))
        self._depth[call.function] = (at, max(0, n - 1))
        if call.callback_state == "pending":
            await self._publish_callback(call)
        if msg is not None:
            await msg.ack_sync()

    async def _publish_callback(self, call: Call) -> None:
        _, subject = callback_stream(self._nats.stream)
        await self._js.publish(subject, call.id.encode(),
                               headers={"Nats-Msg-Id": f"{call.id}:cb:{call.attempts}"})

    async def _dead_keys(self, function: str) -> list[str]:
        """The function's dead-letter keys (nats-py's key filters found none here: the
        prefix is matched on this side)."""
        try:
            keys = await self._dead.keys()
        except Exception:  # NoKeysError: an empty bucket
            return []
        prefix = f"{function}."
        return [k for k in keys if k.startswith(prefix)]

    async def _trim_dead(self, function: str) -> None:
        """Keeps at most ``retention.maxDeadLetters`` per function: the oldest go first."""
        keys = await self._dead_keys(function)
        excess = len(keys) - self._settings.retention.maxDeadLetters
        if excess <= 0:
            return
        dated = [(float((await self._dead.get(k)).value or b"0"), k) for k in keys]
        for _, key in sorted(dated)[:excess]:
            await self._dead.delete(key)

    async def get(self, call_id: str) -> Call | None:
        self._check()
        try:
            entry = await self._kv.get(kv_key(call_id))
        except NotFoundError:  # KeyNotFoundError, KeyDeletedError
            return None
        return decode(entry.value) if entry.value else None

    async def cancel(self, call_id: str) -> Call | None:
        call = await self.get(call_id)
        if call is None:
            return None
        if call.state in ("queued", "retrying"):
            call.state, call.finished_at, call.cancel_requested = "cancelled", now(), True
            await self._put(call)  # its message is acknowledged unrun when it comes up
            at, n = self._depth.get(call.function, (0.0, 0))
            self._depth[call.function] = (at, max(0, n - 1))
        elif call.state == "running":
            call.cancel_requested = True
            await self._put(call)
        return call

    async def dead_letters(self, function: str, limit: int) -> list[Call]:
        self._check()
        calls = []
        for key in await self._dead_keys(function):
            call = await self.get(base64.urlsafe_b64decode(key.split(".", 1)[1]).decode())
            if call is not None and call.state == "dead":
                calls.append(call)
        return sorted(calls, key=lambda c: c.finished_at or 0.0)[:limit]

    async def requeue(self, call_id: str, max_attempts: int) -> Call | None:
        call = await self.get(call_id)
        if call is None or call.state not in ("dead", "failed"):
            return call
        call.state, call.attempts, call.max_attempts = "queued", 0, max_attempts
        call.finished_at, call.cancel_requested = None, False
        call.callback_state, call.callback_attempts, call.callback_last_status = "none", 0, None
        await self._put(call)
        with contextlib.suppress(Exception):
            await self._dead.delete(f"{call.function}.{kv_key(call.id)}")
        _, subject = function_stream(self._nats.stream, call.function)
        await self._js.publish(subject, call.id.encode(),
                               headers={"Nats-Msg-Id": f"{call.id}:requeue:{time.time_ns()}"})
        self._bump(call.function)
        return call

    async def depth(self, function: str) -> int:
        at, n = self._depth.get(function, (0.0, 0))
        if time.monotonic() - at > 1.0 and self.available:
            name, _ = function_stream(self._nats.stream, function)
            with contextlib.suppress(Exception):
                info = await self._js.consumer_info(name, self._nats.consumer)
                n = int(info.num_pending) + int(info.num_ack_pending)
                self._depth[function] = (time.monotonic(), n)
        return n

    def cached_depth(self, function: str) -> int:
        return self._depth.get(function, (0.0, 0))[1]

    async def callbacks_due(self, limit: int) -> tuple[list[Call], float | None]:
        if not self.available or self._cb_sub is None:
            await asyncio.sleep(0.5)
            return [], 0.5
        msgs = await _fetch(self._cb_sub, limit)
        if not msgs:
            return [], 0.0
        calls = []
        for msg in msgs:
            call = await self.get(msg.data.decode())
            if call is None or call.callback_state != "pending":
                await msg.ack()
                continue
            self._cb_msgs[call.id] = msg
            calls.append(call)
        return calls, 0.0

    async def callback_result(self, call: Call, state: CallbackState, last_status: int | None,
                              due_in: float) -> None:
        msg = self._cb_msgs.pop(call.id, None)
        call.callback_state, call.callback_last_status = state, last_status
        call.callback_attempts += 1
        await self._put(call)
        if msg is not None:
            if state == "pending":
                await msg.nak(delay=due_in)
            else:
                await msg.ack()


async def _fetch(sub: Any, limit: int) -> list[Any]:
    """Up to ``limit`` messages from a pull subscription; [] when none came within 1 s."""
    try:
        msgs: list[Any] = await sub.fetch(batch=limit, timeout=1.0)
    except (TimeoutError, nats.errors.TimeoutError):
        return []
    except Exception as exc:
        raise StoreUnavailable(str(exc)) from None
    return msgs
