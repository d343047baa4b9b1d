"""The HTTP trigger: Nuclio's default way in.

Requests become events (method, path without query, query string as
``fields``, headers, body); the response comes back from the pool. Overload
gets 503 after the availability timeout, oversized bodies 413, timeouts 408.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import Field

from core.config import DEFAULT_HTTP_PORT, Address, parse_address
from core.http1 import HTTP1Server, Reply, Request, check_headers, error_reply, text_reply
from core.sockets import bind_socket
from invocations.config import AsyncSettings
from runtime.batching import Batcher
from runtime.events import RawEvent, new_event_id
from runtime.logger import parse_level
from runtime.pool import WorkerUnavailable
from runtime.responses import RawResponse
from triggers.base import Trigger, TriggerAttributes

if TYPE_CHECKING:  # imported at bind, only when async is enabled
    from invocations.endpoint import AsyncEndpoint

LOGS_HEADER_LIMIT = 4096
_LOG_LEVEL_HEADER = "X-Nuclio-Log-Level"


class CORS(TriggerAttributes):
    enabled: bool = False
    allowOrigins: list[str] = Field(default_factory=lambda: ["*"])
    allowMethods: list[str] = Field(
        default_factory=lambda: ["HEAD", "GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"])
    allowHeaders: list[str] = Field(
        default_factory=lambda: ["Accept", "Content-Length", "Content-Type", "Authorization",
                                 "X-Nuclio-Log-Level"])
    allowCredentials: bool = False
    preflightMaxAgeSeconds: int = -1
    exposeHeaders: list[str] = Field(default_factory=lambda: ["X-Nuclio-Logs"])


class HTTPAttributes(TriggerAttributes):
    port: int | None = Field(None, ge=0, le=65535)
    maxRequestBodySize: int = Field(4 * 1024 * 1024, ge=0)
    cors: CORS | None = None
    # Accepted for Nuclio compatibility; deployment concerns with no effect here.
    ingresses: dict[str, Any] | None = None
    readBufferSize: int | None = None
    reduceMemoryUsage: bool | None = None
    serviceType: str | None = None
    # Asynchronous invocation (/async-function/<name>, Prefer: respond-async): invocations/.
    async_: AsyncSettings = Field(default_factory=AsyncSettings, alias="async")


def _logs_header(records: list[dict[str, Any]]) -> str:
    """Nuclio returns captured logs JSON-encoded in a header; keep it under 4 KiB."""
    while records:
        encoded = json.dumps(records, separators=(",", ":"), default=str)
        if len(encoded) <= LOGS_HEADER_LIMIT:
            return encoded
        records = records[:-1]
    return "[]"


def request_event(request: Request, path: str, url: str, trigger_kind: str,
                  trigger_name: str) -> RawEvent:
    """The event an HTTP request makes (shared with the fusion front door, which serves a
    function under ``/function/<name>`` and passes the rest of the path). The request's
    headers dict becomes the event's: names as sent, nothing copied."""
    level_name = request.header(_LOG_LEVEL_HEADER)
    return RawEvent(new_event_id(), request.body, request.header("Content-Type") or "",
                    request.headers, request.query if request.query_string else {},
                    request.method, path, url, time.time(), trigger_kind, trigger_name,
                    parse_level(level_name) if level_name else None)


def http_response(result: RawResponse,
                  decorate: Callable[[dict[str, str]], None] | None = None) -> Reply:
    """A function's response as HTTP (shared with the fusion front door, so a function
    answers the same through both); ``decorate`` adds headers such as CORS."""
    status = result.status
    if not 100 <= status <= 599:
        return error_reply(500, f"the function returned an invalid status code {status}")
    if result.headers:
        headers = dict(result.headers)
        try:
            check_headers(headers)
        except ValueError as exc:  # e.g. a header value with a newline
            return error_reply(500, f"the function returned an invalid response: {exc}")
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = result.content_type
    else:
        headers = {"Content-Type": result.content_type}
    if result.logs is not None:
        headers["X-Nuclio-Logs"] = _logs_header(result.logs)
    if decorate is not None:
        decorate(headers)
    return Reply(status, result.body, headers)


class HTTPTrigger(Trigger):
    kind = "http"
    Attributes = HTTPAttributes
    attributes: HTTPAttributes
    _server: HTTP1Server | None = None
    _async: AsyncEndpoint | None = None  # when attributes.async.enabled

    def listen_address(self, default_host: str) -> Address:
        """The trigger's ``url`` (Nuclio's default :8080), its ``port`` attribute winning."""
        address = parse_address(self.config.url or f":{DEFAULT_HTTP_PORT}",
                                f"{self.config.yaml_path}.url", default_host)
        if self.attributes.port is not None:
            address = Address(address.host, self.attributes.port)
        return address

    def bind(self, default_host: str) -> None:
        self.address = address = self.listen_address(default_host)
        self._server = HTTP1Server(
            self._handle, bind_socket(address, f"{self.config.yaml_path}.attributes.port"),
            max_body=self.attributes.maxRequestBodySize)
        batch = self.config.batch
        self._submit = (Batcher(self.pool.submit, batch.batchSize, batch.timeout).submit
                        if batch is not None else self.pool.submit)
        self._cors = self.attributes.cors if self.attributes.cors and \
            self.attributes.cors.enabled else None
        if self.attributes.async_.enabled:
            from invocations.endpoint import AsyncEndpoint  # only when enabled

            self._async = AsyncEndpoint(
                self.attributes.async_, f"{self.config.yaml_path}.attributes.async",
                self.metrics.function_name, self.pool.submit, self.pool.size,
                self.attributes.maxRequestBodySize, self.name, self.metrics.registry,
                self.logger)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.port

    async def start(self) -> None:
        assert self._server is not None
        if self._async is not None:
            await self._async.start()
        await self._server.start()
        self.logger.info_with("HTTP trigger listening", trigger=self.name,
                              address=f"{self.address.host}:{self.port}",
                              workers=self.pool.size)

    async def stop_accepting(self) -> None:
        if self._async is not None:
            self._async.stop_accepting()
        if self._server is not None:
            self._server.stop_listening()

    async def close(self) -> None:
        if self._server is not None:
            await self._server.shutdown(1.0)
        if self._async is not None:
            await self._async.close(self.config.termination_timeout)

    def status(self) -> dict[str, Any]:
        return {"async": self._async.status()} if self._async is not None else {}

    async def _handle(self, request: Request) -> Reply:
        started = time.perf_counter()
        path = request.path
        if path == "/__internal/health":
            return text_reply(200, "OK")
        cors = self._cors
        if cors is not None and request.method == "OPTIONS" and \
                request.header("Access-Control-Request-Method") is not None:
            return self._preflight(request, cors)
        if self._async is not None and self._async.wants(request):
            return await self._async.handle(request)
        if request.error is not None:
            self.metrics.rejected(request.error.reason)
            return error_reply(request.error.status, str(request.error))
        raw = request_event(request, path, request.raw_path, "http", self.name)
        try:
            result: RawResponse = await self._submit(raw)  # type: ignore[assignment]
        except WorkerUnavailable as exc:
            self.metrics.rejected("no_worker")
            return error_reply(503, str(exc))
        response = self._to_http(result, request)
        self.metrics.observe_latency(time.perf_counter() - started)
        return response

    def _to_http(self, result: RawResponse, request: Request) -> Reply:
        cors = self._cors
        if cors is None:
            return http_response(result)
        return http_response(result, lambda headers: self._add_cors(headers, request, cors))

    @staticmethod
    def _origin_allowed(origin: str, cors: CORS) -> bool:
        return "*" in cors.allowOrigins or origin in cors.allowOrigins

    def _add_cors(self, headers: dict[str, str], request: Request, cors: CORS) -> None:
        origin = request.header("Origin")
        if origin is None or not self._origin_allowed(origin, cors):
            return
        headers["Access-Control-Allow-Origin"] = origin if cors.allowCredentials or \
            "*" not in cors.allowOrigins else "*"
        if cors.allowCredentials:
            headers["Access-Control-Allow-Credentials"] = "true"
        if cors.exposeHeaders:
            headers["Access-Control-Expose-Headers"] = ", ".join(cors.exposeHeaders)

    def _preflight(self, request: Request, cors: CORS) -> Reply:
        origin = request.header("Origin") or ""
        method = (request.header("Access-Control-Request-Method") or "").upper()
        allowed_methods = {m.upper() for m in cors.allowMethods}
        asked = [h.strip() for h in
                 (request.header("Access-Control-Request-Headers") or "").split(",")
                 if h.strip()]
        allowed_headers = {h.lower() for h in cors.allowHeaders}
        if (not self._origin_allowed(origin, cors) or method not in allowed_methods
                or any(h.lower() not in allowed_headers for h in asked)):
            return text_reply(400, "CORS preflight request is not allowed")
        headers = {
            "Access-Control-Allow-Methods": ", ".join(cors.allowMethods),
            "Access-Control-Allow-Headers": ", ".join(cors.allowHeaders),
        }
        if cors.preflightMaxAgeSeconds >= 0:
            headers["Access-Control-Max-Age"] = str(cors.preflightMaxAgeSeconds)
        self._add_cors(headers, request, cors)
        return Reply(200, b"", headers)
