"""Health (/live, /ready), Prometheus (/metrics), and the status page and API endpoints.

They listen before the workers run ``init_context`` so that orchestrators see
a live-but-not-ready processor while a slow model loads. When the health and
metrics addresses are the same, one listener serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.web_request import BaseRequest
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.config import Address
from core.http_server import BoundHTTPServer
from core.metrics import Metrics
from core.sockets import bind_socket
from processor.status.server import StatusRoutes

ReadyProbe = Callable[[], tuple[bool, dict[str, Any]]]


class HealthServer:
    def __init__(self, health: Address | None, metrics_address: Address | None,
                 metrics: Metrics, ready_probe: ReadyProbe,
                 status: StatusRoutes | None = None) -> None:
        self._metrics = metrics
        self._ready_probe = ready_probe
        # The page and the status API (GET /, /dashboard, /api/...), on the health address.
        self._status = status if health is not None else None
        self._servers: list[BoundHTTPServer] = []
        if health is not None:
            serve_metrics = metrics_address == health
            self._servers.append(BoundHTTPServer(
                self._health_routes(serve_metrics),
                bind_socket(health, "platform config healthCheck.listenAddress")))
        if metrics_address is not None and metrics_address != health:
            self._servers.append(BoundHTTPServer(
                self._metrics_routes,
                bind_socket(metrics_address, "platform config metrics.sinks.<prometheusPull>.url")))

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self._servers]

    def _health_routes(self, with_metrics: bool) -> Any:
        async def handle(request: BaseRequest) -> web.StreamResponse:
            path = request.path
            if path == "/live":
                return web.json_response({"live": True})
            if path == "/ready":
                ready, details = self._ready_probe()
                return web.json_response({"ready": ready, **details},
                                         status=200 if ready else 503)
            if with_metrics and path == "/metrics":
                return self._scrape()
            if self._status is not None:
                response = await self._status.handle(request)
                if response is not None:
                    return response
            return web.json_response({"error": "not found"}, status=404)

        return handle

    async def _metrics_routes(self, request: BaseRequest) -> web.StreamResponse:
        if request.path == "/metrics":
            return self._scrape()
        return web.json_response({"error": "not found"}, status=404)

    def _scrape(self) -> web.Response:
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        for server in self._servers:
            await server.start()
        if self._status is not None:
            self._status.start()

    async def close(self) -> None:
        if self._status is not None:
            await self._status.close()  # ends open event and preview streams
        for server in self._servers:
            await server.shutdown(0.5)
