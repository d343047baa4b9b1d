"""What one http trigger holds when its ``async`` attribute is enabled.

Opened in the trigger's ``bind`` (so a bad store is a ConfigError, exit 2, before
anything listens), started with the trigger, told to stop accepting on SIGTERM,
closed after the pool drained: running calls finish within
``workerTerminationTimeout``, queued ones stay stored for the next start.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from core.http1 import Reply, Request
from invocations import metrics as async_metrics
from invocations.config import AsyncSettings
from invocations.dispatcher import Dispatcher, Submit
from invocations.metrics import AsyncMetrics
from invocations.routes import AsyncRoutes, wants_async
from invocations.service import FunctionQueue, acquire, release
from runtime.logger import Logger


class AsyncEndpoint:
    def __init__(self, settings: AsyncSettings, yaml_path: str, function: str, submit: Submit,
                 pool_size: int, max_body: int, trigger_name: str,
                 registry: CollectorRegistry | None, logger: Logger) -> None:
        self.service = acquire(settings, yaml_path, logger)
        store = self.service.store
        existing = self.service.functions.get(function)
        metrics = existing.metrics if existing else AsyncMetrics(
            function, lambda: _depth(store, function))
        if existing is None:
            async_metrics.register(registry, metrics)
        dispatcher = Dispatcher(function, store, submit, settings.max_inflight(pool_size),
                                settings.retry, metrics, logger, trigger_kind="http",
                                trigger_name=trigger_name, on_final=self.service.callbacks.wake,
                                heartbeat_interval=getattr(store, "heartbeat_interval", None))
        self.queue = FunctionQueue(function, settings, dispatcher, metrics, max_body)
        self.service.add(self.queue)
        self.routes = AsyncRoutes(self.service, self.service.functions, function)
        self._logger = logger

    wants = staticmethod(wants_async)

    async def start(self) -> None:
        await self.service.start_queue(self.queue)
        self._logger.info_with("Async invocations enabled", function=self.queue.name,
                               **{k: v for k, v in self.service.status().items()
                                  if k in ("backend", "directory", "state", "queued")})

    async def handle(self, request: Request) -> Reply:
        return await self.routes.handle(request)

    def stop_accepting(self) -> None:
        self.service.stop_accepting()

    async def close(self, timeout: float) -> None:
        await release(self.service, timeout)

    def status(self) -> dict[str, Any]:
        return self.service.status()


def _depth(store: Any, function: str) -> int:
    depth = getattr(store, "cached_depth", None)
    return int(depth(function)) if depth is not None else 0
