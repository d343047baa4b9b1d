"""One store per processor, a queue (dispatcher) per function.

``AsyncService`` owns the store and the callback sender and knows every
function queue; triggers (and a future multi-function front door) get it through
``acquire`` keyed by the store's location, so two triggers of one processor share
one store and one lock. ``FunctionQueue`` is what a trigger adds: the function's
dispatcher, policy and metrics.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from core.config import ConfigError
from invocations.config import AsyncSettings, CallbackSettings, fallback_directory
from invocations.dispatcher import Dispatcher
from invocations.metrics import AsyncMetrics
from invocations.store import CallStore
from runtime.logger import Logger


@dataclass
class FunctionQueue:
    name: str
    settings: AsyncSettings
    dispatcher: Dispatcher
    metrics: AsyncMetrics
    max_body: int


class AsyncService:
    def __init__(self, key: str, store: CallStore, logger: Logger) -> None:
        from invocations.callback import CallbackSender  # aiohttp client: only when used

        self.key = key
        self.store = store
        self.functions: dict[str, FunctionQueue] = {}
        self.accepting = True
        self._users = 0
        self._started = False
        self.callbacks = CallbackSender(store, self._callback_settings, self._retry_max,
                                        self._metrics, logger)

    def _callback_settings(self, function: str) -> CallbackSettings:
        queue = self.functions.get(function)
        return queue.settings.callback if queue else CallbackSettings()

    def _retry_max(self, function: str) -> int:
        queue = self.functions.get(function)
        return (queue.settings.retry.maxAttempts if queue else 1) - 1

    def _metrics(self, function: str) -> AsyncMetrics | None:
        queue = self.functions.get(function)
        return queue.metrics if queue else None

    def add(self, queue: FunctionQueue) -> None:
        self.functions[queue.name] = queue

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        await self.store.start()
        await self.callbacks.start()

    async def start_queue(self, queue: FunctionQueue) -> None:
        await self.start()
        await queue.dispatcher.start()

    def stop_accepting(self) -> None:
        """SIGTERM: new async requests get 503; dispatchers claim nothing new."""
        self.accepting = False
        for queue in self.functions.values():
            queue.dispatcher.stop_claiming()

    def status(self) -> dict[str, Any]:
        out = self.store.status()
        out["accepting"] = self.accepting
        out["inflight"] = {n: q.dispatcher.inflight for n, q in self.functions.items()}
        return out


_services: dict[str, AsyncService] = {}


def _open_sqlite(settings: AsyncSettings, yaml_path: str, logger: Logger) -> tuple[str, CallStore]:
    from invocations.sqlite_store import SqliteStore

    directory = settings.directory
    candidates = [directory] if directory else [os.environ.get("NUCLIO_ASYNC_DIRECTORY")
                                                or "/var/lib/nuclio/async", fallback_directory()]
    last: Exception | None = None
    for path in candidates:
        assert path is not None
        path = os.path.abspath(path)
        if path in _services:
            return path, _services[path].store
        store = SqliteStore(path, settings.retention, logger)
        try:
            store.open()
        except Exception as exc:
            last = exc
            logger.warn_with("Async store directory not usable", directory=path,
                             error=str(exc))
            continue
        if path != candidates[0]:
            logger.warn_with("Async store in the fallback directory (set "
                             "attributes.async.directory to a volume)", directory=path)
        return path, store
    raise ConfigError(f"{yaml_path}.directory: cannot use {candidates[0]!r} for the async "
                      f"store: {last}")


def acquire(settings: AsyncSettings, yaml_path: str, logger: Logger) -> AsyncService:
    """The processor's service for this store (opened now: a bad directory or NATS
    setting is a ConfigError naming ``yaml_path``, before anything listens)."""
    if settings.backend == "nats":
        from invocations.jetstream_store import JetStreamStore

        key = f"nats:{settings.nats.url}:{settings.nats.stream}"
        if key not in _services:
            _services[key] = AsyncService(key, JetStreamStore(settings, yaml_path, logger),
                                          logger)
    else:
        key, store = _open_sqlite(settings, yaml_path, logger)
        if key not in _services:
            _services[key] = AsyncService(key, store, logger)
    service = _services[key]
    service._users += 1
    return service


async def release(service: AsyncService, timeout: float) -> None:
    """The last user closes the dispatchers, the callback sender and the store."""
    service._users -= 1
    if service._users > 0:
        return
    _services.pop(service.key, None)
    for queue in service.functions.values():
        await queue.dispatcher.close(timeout)
    await service.callbacks.close()
    await service.store.close()
