"""The front door: one http listener for every hosted function, OpenFaaS gateway routes.

- ``ANY /function/<name>[/<path>][?query]``: synchronous; the event is what the
  function's own http trigger would build from ``<path>`` (``/`` when absent), the query
  as ``fields``, and the method, headers and body as sent;
- ``/async-function/<name>[/<path>]`` and its status, cancel, dead-letter and requeue
  routes: ``invocations``' async machinery over the processor's one store, a queue per
  function (a function whose own trigger enabled ``async`` on the same store keeps that
  queue; the others get one here).

Events go to the function's ``LocalTarget`` (the pool of its first http trigger, else of
its first trigger), named as that trigger. An unknown name is a 404 that lists nothing.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from core.config import Address, validate_model
from core.http1 import HTTP1Server, Reply, Request, error_reply
from core.sockets import bind_socket
from fusion.local import LocalTarget
from invocations.config import AsyncSettings
from invocations.endpoint import AsyncEndpoint
from invocations.routes import AsyncRoutes
from invocations.service import AsyncService, acquire, release
from runtime.logger import Logger, event_headers
from runtime.pool import WorkerUnavailable
from triggers.http import http_response, request_event

SYNC_PREFIX = "/function/"
ASYNC_PREFIX = "/async-function/"
YAML_PATH = "platform config fusion.frontDoor"


class FrontDoor:
    def __init__(self, address: Address, targets: dict[str, LocalTarget], max_body: int,
                 async_config: dict[str, Any], registry: CollectorRegistry | None,
                 logger: Logger) -> None:
        self.address = address
        self._targets = targets
        self._max_body = max_body
        self._logger = logger
        self._async_config = async_config
        self._registry = registry
        self._server: HTTP1Server | None = None
        self._endpoints: list[AsyncEndpoint] = []
        self._routes: AsyncRoutes | None = None
        self._service: AsyncService | None = None

    def bind(self) -> None:
        self._server = HTTP1Server(self._handle,
                                   bind_socket(self.address, f"{YAML_PATH}.listenAddress"),
                                   max_body=self._max_body)
        self._bind_async()

    def _bind_async(self) -> None:
        settings = validate_model(AsyncSettings, {**self._async_config, "enabled": True},
                                  f"{YAML_PATH}.async")
        self._service = acquire(settings, f"{YAML_PATH}.async", self._logger)
        for name, target in self._targets.items():
            if name in self._service.functions:
                continue  # its own http trigger's async queue, on this same store
            self._endpoints.append(AsyncEndpoint(
                settings, f"{YAML_PATH}.async", name, target.submit, target.pool_size,
                self._max_body, target.trigger_name, self._registry, self._logger))
        self._routes = AsyncRoutes(self._service, self._service.functions, None)

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.port

    async def start(self) -> None:
        assert self._server is not None
        for endpoint in self._endpoints:
            await endpoint.start()
        await self._server.start()
        self._logger.info_with("Front door listening", address=f"{self.address.host}:{self.port}",
                               functions=sorted(self._targets))

    def stop_accepting(self) -> None:
        if self._service is not None:
            self._service.stop_accepting()
        if self._server is not None:
            self._server.stop_listening()

    async def close(self, timeout: float) -> None:
        if self._server is not None:
            await self._server.shutdown(1.0)
        for endpoint in self._endpoints:
            await endpoint.close(timeout)
        if self._service is not None:
            await release(self._service, timeout)

    async def _handle(self, request: Request) -> Reply:
        path = request.path
        if path.startswith(ASYNC_PREFIX):
            assert self._routes is not None  # made in bind(), before the server listens
            return await self._routes.handle(request)
        if not path.startswith(SYNC_PREFIX):
            return error_reply(404, "expected /function/<name> or /async-function/<name>")
        name, _, sub = path[len(SYNC_PREFIX):].partition("/")
        target = self._targets.get(name)
        if target is None:
            return error_reply(404, f"no function named {name!r} is served here")
        if request.error is not None:
            return error_reply(request.error.status, str(request.error))
        url = request.raw_path[len(SYNC_PREFIX) + len(name):] or "/"
        raw = request_event(request, "/" + sub, url, target.trigger_kind, target.trigger_name)
        token = event_headers.set(raw.headers)
        try:
            result = await target.submit(raw)
        except WorkerUnavailable as exc:
            return error_reply(503, str(exc))
        finally:
            event_headers.reset(token)
        assert not isinstance(result, list)
        return http_response(result)
