"""Health (/live, /ready), Prometheus (/metrics), and the status page and API endpoints.

They listen before the workers run ``init_context`` so that orchestrators see
a live-but-not-ready processor while a slow model loads. When the health and
metrics addresses are the same, one listener serves both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from core.config import Address
from core.http1 import HTTP1Server, Reply, Request, error_reply, json_reply
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
        self._servers: list[HTTP1Server] = []
        if health is not None:
            serve_metrics = metrics_address == health
            self._servers.append(HTTP1Server(
                self._health_routes(serve_metrics),
                bind_socket(health, "platform config healthCheck.listenAddress")))
        if metrics_address is not None and metrics_address != health:
            self._servers.append(HTTP1Server(
                self._metrics_routes,
                bind_socket(metrics_address, "platform config metrics.sinks.<prometheusPull>.url")))

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self._servers]

    def _health_routes(self, with_metrics: bool) -> Any:
        async def handle(request: Request) -> Reply:
            path = request.path
            if path == "/live":
                return json_reply(200, {"live": True})
            if path == "/ready":
                ready, details = self._ready_probe()
                return json_reply(200 if ready else 503, {"ready": ready, **details})
            if with_metrics and path == "/metrics":
                return self._scrape()
            if self._status is not None:
                response = await self._status.handle(request)
                if response is not None:
                    return response
            return error_reply(404, "not found")

        return handle

    async def _metrics_routes(self, request: Request) -> Reply:
        if request.path == "/metrics":
            return self._scrape()
        return error_reply(404, "not found")

    def _scrape(self) -> Reply:
        body = generate_latest(self._metrics.registry)
        return Reply(200, body, {"Content-Type": CONTENT_TYPE_LATEST})

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
