"""Helpers for the async-invocation tests and benchmark: a real callback receiver
(aiohttp on a loopback port, in a thread) and function configs with async on."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from aiohttp import web

from test.support import free_port, wait_for


class CallbackReceiver:
    """Records every callback POST (headers, body); can go down and come back on the
    same port; answers ``status`` (a test can make it fail)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cb"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.received.append((dict(request.headers), body))
        return web.Response(status=self.status, text="thanks")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/cb", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, backlog=1024).start()

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> CallbackReceiver:
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def calls(self) -> list[tuple[dict[str, str], bytes]]:
        with self._lock:
            return list(self.received)

    def ids(self) -> list[str]:
        return [h.get("X-Call-Id", "") for h, _ in self.calls()]


def wait_until(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition"
               ) -> Any:
    return wait_for(check, timeout, what)


def async_config(handler: str, port: int, directory: str, *, workers: int = 2,
                 name: str = "pi", env: dict[str, str] | None = None,
                 event_timeout: str | None = None, **async_attrs: Any) -> dict[str, Any]:
    """A function.yaml (dict) with one http trigger on 127.0.0.1:port and async on,
    with short retry/callback delays unless the test says otherwise."""
    settings: dict[str, Any] = {
        "enabled": True, "directory": directory,
        "retry": {"maxAttempts": 4, "initialDelay": "50ms", "maxDelay": "200ms"},
        "callback": {"maxAttempts": 50, "initialDelay": "50ms", "maxDelay": "300ms"},
    }
    for key, value in async_attrs.items():
        if isinstance(value, dict) and isinstance(settings.get(key), dict):
            settings[key] = {**settings[key], **value}
        else:
            settings[key] = value
    spec: dict[str, Any] = {
        "runtime": "python:3.11", "handler": handler,
        "triggers": {"http": {"kind": "http", "numWorkers": workers,
                              "url": f"127.0.0.1:{port}",
                              "workerTerminationTimeout": "5s",
                              "attributes": {"async": settings}}},
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
    }
    if event_timeout:
        spec["eventTimeout"] = event_timeout
    return {"apiVersion": "nuclio.io/v1", "kind": "NuclioFunction",
            "metadata": {"name": name, "namespace": "default"}, "spec": spec}
