"""The extproc trigger: the processor as an Envoy external processor.

A gRPC server implements ``envoy.service.ext_proc.v3.ExternalProcessor/Process``
(one bidirectional stream per HTTP request) and the standard
``grpc.health.v1`` service; or, with ``transport: http``, the lean HTTP server
takes Envoy's JSON messages one POST each (triggers/extproc/http_transport.py,
headers only). Each phase Envoy sends becomes at most one event
(see triggers/extproc/events.py); the handler's response becomes the phase's
reply (triggers/extproc/mutations.py). What runs when depends on ``type``:

- ``preprocessor`` runs the handler on the request, ``postprocessor`` on the
  response, ``wrapprocessor`` on both; Envoy waits for each reply.
- ``observeprocessor`` answers CONTINUE at once (or nothing, under Envoy's
  ``observability_mode``) and queues the event for a background consumer; a
  full queue drops the event and counts it.

A message with a body reaches the handler once, at its body phase, when Envoy
sends bodies (BUFFERED: the whole body in one message; STREAMED: chunks,
accumulated unless ``bufferStreamedBodies`` is off); a message without one, or
sent with body mode NONE, reaches it at its headers phase. Envoy says its body
modes in the stream's first message (``protocol_config``); without them we
assume BUFFERED.

The handler runs shielded from the stream: when Envoy gives up on a slow
reply (``message_timeout``) or resets the stream, the event still completes on
its worker (so the worker is not replaced for being slow) and its reply is
dropped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from core.config import Address, parse_address
from core.http_body import BodyError, BodyTooLarge
from core.sockets import bind_grpc_server, bind_socket
from runtime.events import RawEvent
from runtime.pool import WorkerUnavailable
from runtime.responses import JSON, RawResponse, dump_json
from triggers.base import Trigger
from triggers.extproc.config import ExtProcAttributes
from triggers.extproc.events import (
    BUFFERED,
    NONE,
    REQUEST_BODY,
    REQUEST_HEADERS,
    RESPONSE_BODY,
    RESPONSE_HEADERS,
    STREAMED,
    Direction,
    Exchange,
    header_dict,
)
from triggers.extproc.http_transport import HTTPTransport
from triggers.extproc.mutations import (
    CLEAR_CHUNK,
    CONTINUE,
    CONTINUE_REQUEST_TRAILERS,
    CONTINUE_RESPONSE_TRAILERS,
    CONTINUE_WITHOUT_LENGTH,
    error_reply,
    reply,
)

SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"


class ExtProcTrigger(Trigger):
    kind = "extproc"
    Attributes = ExtProcAttributes
    attributes: ExtProcAttributes
    _server: grpc.aio.Server | None = None
    _http: HTTPTransport | None = None  # transport: http
    _stopping: asyncio.Future[Any] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        attrs = self.attributes
        options = attrs.processingOptions
        # Resolved once: the per-message path reads plain attributes.
        self._limit = options.perRequestBodyBufferBytes
        self._decompress = options.decompressBodies
        self._request_id = options.requestIdHeaderName
        self._accumulate = options.bufferStreamedBodies
        self._log_stream = options.logStream
        self._log_phases = options.logPhases
        self._fail_open = attrs.failOpen
        self._on_request = attrs.type in ("preprocessor", "wrapprocessor")
        self._on_response = attrs.type in ("postprocessor", "wrapprocessor")
        self._observe = attrs.type == "observeprocessor"
        self._queue: asyncio.Queue[RawEvent] | None = None
        self._consumers: list[asyncio.Task[None]] = []
        self._health = health_aio.HealthServicer()
        self._pending: set[asyncio.Future[Any]] = set()
        self.address: Address | None = None

    # -- life cycle ------------------------------------------------------------------------
    def listen_ports(self) -> list[int]:
        return [self.attributes.port]

    def bind(self, default_host: str) -> None:
        yaml_path = f"{self.config.yaml_path}.attributes.port"
        url = self.config.url
        host = parse_address(url, f"{self.config.yaml_path}.url", default_host).host \
            if url else default_host
        if self.attributes.transport == "http":
            sock = bind_socket(Address(host, self.attributes.port), yaml_path)
            self._http = HTTPTransport(self.on_single_message, sock, self._bad_message)
            self.address = Address(host, self._http.server.port)
            return
        server, port = bind_grpc_server(Address(host, self.attributes.port), yaml_path, [
            ("grpc.max_concurrent_streams", self.attributes.maxConcurrentStreams),
            ("grpc.max_receive_message_length", max(64 << 20, 2 * self._limit)),
            ("grpc.max_send_message_length", max(64 << 20, 2 * self._limit)),
        ])
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
            "Process": grpc.stream_stream_rpc_method_handler(
                self._process, request_deserializer=pb.ProcessingRequest.FromString),
        }),))
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        self.address = Address(host, port)
        self._server = server

    async def start(self) -> None:
        if self._observe:
            self._queue = asyncio.Queue(self.attributes.observeQueueSize)
            loop = asyncio.get_running_loop()
            self._consumers = [loop.create_task(self._consume(self._queue))
                               for _ in range(self.pool.size)]
        if self._http is not None:
            await self._http.server.start()
        else:
            assert self._server is not None
            await self._server.start()
            await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
            await self._health.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
        self.logger.info_with("ext_proc trigger listening", trigger=self.name,
                              address=str(self.address), type=self.attributes.type,
                              transport=self.attributes.transport, workers=self.pool.size)

    async def stop_accepting(self) -> None:
        if self._http is not None:
            self._http.server.stop_listening()
        if self._server is None:
            return
        await self._health.enter_graceful_shutdown()
        # New streams are refused at once; streams in flight get the grace period.
        self._stopping = asyncio.ensure_future(
            self._server.stop(self.attributes.gracefulShutdownTimeout))

    async def close(self) -> None:
        if self._http is not None:  # messages in flight get the grace period
            await self._http.server.shutdown(self.attributes.gracefulShutdownTimeout)
        elif self._stopping is not None:
            await self._stopping
        elif self._server is not None:
            await self._server.stop(0)
        for task in self._consumers:
            task.cancel()
        await asyncio.gather(*self._consumers, return_exceptions=True)
        if self._queue is not None and self._queue.qsize():
            for _ in range(self._queue.qsize()):
                self.metrics.rejected("observe_shutdown")

    # -- the stream ------------------------------------------------------------------------
    async def _process(self, requests: AsyncIterator[pb.ProcessingRequest],
                       context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        exchange: Exchange | None = None
        phases: list[str] = []
        try:
            async for message in requests:
                if exchange is None:
                    exchange = self._new_exchange(message)
                answer = await self._on_message(exchange, message, phases)
                if answer is not None and not message.observability_mode:
                    yield answer
        except asyncio.CancelledError:  # Envoy reset the stream (e.g. message_timeout)
            self._log_end(exchange, phases, started, "reset")
            raise
        except Exception as exc:  # a broken stream ends itself, never the server
            self._bad_message(f"{type(exc).__name__}: {exc}")
            self._log_end(exchange, phases, started, "broken")
            return
        self._log_end(exchange, phases, started, "done")

    async def on_single_message(self, phase: str, headers: dict[str, str], end: bool
                                ) -> bytes | None:
        """A headers message that arrived alone (the HTTP transport): an exchange of its
        own, since nothing ties it to the other messages of its HTTP request. None when it
        failed (counted and logged, as a broken stream)."""
        started = time.perf_counter()
        exchange = Exchange(NONE, NONE)  # Envoy sends no bodies over HTTP
        phases: list[str] = []
        try:
            answer = await self._on_headers_message(exchange, phase, headers, end, phases)
        except Exception as exc:
            self._bad_message(f"{type(exc).__name__}: {exc}")
            self._log_end(exchange, phases, started, "broken")
            return None
        self._log_end(exchange, phases, started, "done")
        return answer

    def _bad_message(self, error: str) -> None:
        """A broken stream, or a message that could not be handled: only its request is
        affected."""
        self.metrics.rejected("extproc_stream_error")
        self.logger.warn_with("ext_proc stream failed", trigger=self.name, error=error)

    def _new_exchange(self, first: pb.ProcessingRequest) -> Exchange:
        if first.HasField("protocol_config"):
            config = first.protocol_config
            return Exchange(config.request_body_mode, config.response_body_mode)
        return Exchange(BUFFERED, BUFFERED)

    async def _on_message(self, ex: Exchange, message: pb.ProcessingRequest,
                          phases: list[str]) -> bytes | None:
        kind = message.WhichOneof("request")
        if kind == "request_headers" or kind == "response_headers":
            msg = getattr(message, kind)
            return await self._on_headers_message(ex, kind, header_dict(msg.headers),
                                                 msg.end_of_stream, phases)
        if kind == "request_body":
            return await self._on_body(ex, ex.request, REQUEST_BODY, message.request_body,
                                       self._on_request, phases)
        if kind == "response_body":
            return await self._on_body(ex, ex.response, RESPONSE_BODY, message.response_body,
                                       self._on_response, phases)
        if kind == "request_trailers":
            return CONTINUE_REQUEST_TRAILERS
        if kind == "response_trailers":
            return CONTINUE_RESPONSE_TRAILERS
        return None

    async def _on_headers_message(self, ex: Exchange, kind: str, headers: dict[str, str],
                                 end: bool, phases: list[str]) -> bytes:
        """A ``request_headers`` or ``response_headers`` message, from either transport;
        the serialized ``ProcessingResponse`` for it."""
        if kind == "request_headers":
            ex.on_request_headers(headers, self._decompress, self._request_id)
            return await self._on_headers(ex, ex.request, REQUEST_HEADERS, end,
                                          self._on_request, phases)
        ex.on_response_headers(headers, self._decompress)
        return await self._on_headers(ex, ex.response, RESPONSE_HEADERS, end,
                                      self._on_response, phases)

    async def _on_headers(self, ex: Exchange, side: Direction, phase: str, end: bool,
                          blocking: bool, phases: list[str]) -> bytes:
        body_mode = side.body_mode
        if end or body_mode == NONE:  # the only phase this message will have
            if self._observe:
                self._observe_event(ex, phase, b"", phases)
            elif blocking:
                return await self._run_blocking(ex, phase, b"", phases)
        elif blocking and body_mode == STREAMED:
            return CONTINUE_WITHOUT_LENGTH[phase]
        return CONTINUE[phase]

    async def _on_body(self, ex: Exchange, side: Direction, phase: str, msg: pb.HttpBody,
                       blocking: bool, phases: list[str]) -> bytes:
        if not (blocking or self._observe) or side.complete:
            # Envoy may follow a body's last chunk with an empty end-of-stream message
            # (seen under observability_mode): that body has had its event already.
            return CONTINUE[phase]
        end = msg.end_of_stream
        streamed = side.body_mode == STREAMED
        side.complete = end or not streamed
        held = streamed and self._accumulate
        if held:
            if side.discarded:  # over the limit already (observe; a blocking type said 413)
                return CONTINUE[phase]
            try:
                side.add_chunk(msg.body, self._limit)
            except BodyTooLarge as exc:
                side.discard()
                return self._too_large(phase, str(exc))
            if not end:
                return CLEAR_CHUNK[phase] if blocking else CONTINUE[phase]
            body = side.take_body()
        else:
            body = msg.body
            if len(body) > self._limit:
                return self._too_large(phase, f"the body is over {self._limit} bytes")
        if self._observe:
            self._observe_event(ex, phase, body, phases)
            return CONTINUE[phase]
        return await self._run_blocking(ex, phase, body, phases, held=held, streamed=streamed)

    def _too_large(self, phase: str, message: str) -> bytes:
        self.metrics.rejected("body_too_large")
        if self._observe:
            return CONTINUE[phase]
        return error_reply(413, dump_json({"error": message}), JSON)

    # -- running the handler ---------------------------------------------------------------
    async def _run_blocking(self, ex: Exchange, phase: str, body: bytes, phases: list[str], *,
                            held: bool = False, streamed: bool = False) -> bytes:
        if self._log_phases:
            self._log_phase(ex, phase, body)
        phases.append(phase)
        side = ex.response if phase > REQUEST_BODY else ex.request
        try:
            event = ex.event(phase, body, self.name, self._limit)
        except BodyError as exc:
            self.metrics.rejected(exc.reason)
            return error_reply(exc.status, dump_json({"error": str(exc)}), JSON)
        started = time.perf_counter()
        result = await self._submit(event)
        self.metrics.observe_latency(time.perf_counter() - started)
        original = body if held else None
        if result is None:  # no worker, fail open: unmodified
            if original is not None:
                return reply(phase, _UNCHANGED, original=original, length_known=False)
            return CONTINUE[phase]
        return reply(phase, result, original=original, decompressed=bool(side.encoding),
                     length_known=not streamed)

    async def _submit(self, event: RawEvent) -> RawResponse | None:
        """The handler's response; None to continue unmodified (fail-open). Shielded: a
        stream Envoy gives up on must not cancel the event on its worker."""
        task = asyncio.ensure_future(self.pool.submit(event))
        self._pending.add(task)
        task.add_done_callback(self._forget)
        try:
            result = await asyncio.shield(task)
        except WorkerUnavailable as exc:
            if self._fail_open:
                self.metrics.rejected("no_worker_fail_open")
                return None
            self.metrics.rejected("no_worker")
            return _unavailable(str(exc), event.id)
        if isinstance(result, list):  # batch mode makes no sense here; take the first
            return result[0]
        return result

    def _forget(self, task: asyncio.Future[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a reply nobody waits for any more is not an error

    def _observe_event(self, ex: Exchange, phase: str, body: bytes, phases: list[str]) -> None:
        phases.append(phase)
        if self._log_phases:
            self._log_phase(ex, phase, body)
        queue = self._queue
        assert queue is not None
        if queue.full():
            self.metrics.rejected("observe_queue_full")
            return
        try:
            event = ex.event(phase, body, self.name, self._limit)
        except BodyError as exc:
            self.metrics.rejected(exc.reason)
            return
        queue.put_nowait(event)

    async def _consume(self, queue: asyncio.Queue[RawEvent]) -> None:
        """One of ``numWorkers`` background consumers of observed events."""
        while True:
            event = await queue.get()
            started = time.perf_counter()
            try:
                await self.pool.submit(event)
            except WorkerUnavailable:
                self.metrics.rejected("no_worker")
                continue
            self.metrics.observe_latency(time.perf_counter() - started)

    # -- logs ----------------------------------------------------------------------------
    def _log_phase(self, ex: Exchange, phase: str, body: bytes) -> None:
        self.logger.info_with("ext_proc phase", trigger=self.name, request_id=ex.request_id,
                              phase=int(phase), method=ex.method, path=ex.path,
                              body_bytes=len(body))

    def _log_end(self, ex: Exchange | None, phases: list[str], started: float,
                 outcome: str) -> None:
        if self._log_stream and ex is not None:
            self.logger.info_with("ext_proc stream ended", trigger=self.name,
                                  request_id=ex.request_id, method=ex.method, path=ex.path,
                                  status=ex.status, phases=[int(p) for p in phases],
                                  outcome=outcome,
                                  duration_ms=round((time.perf_counter() - started) * 1000, 3))


_UNCHANGED = RawResponse(200, {}, b"", "")


def _unavailable(message: str, event_id: str) -> RawResponse:
    return RawResponse(503, {"x-nuclio-immediate-response": "true"},
                       dump_json({"error": message, "event_id": event_id}), JSON, event_id)
