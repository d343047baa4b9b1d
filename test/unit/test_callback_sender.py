"""The callback sender's loop outlives a store error that is not StoreUnavailable (NATS
going away in the middle of a batch raised nats-py's own errors, which ended the loop
and with it every later callback of the processor)."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from invocations.callback import CallbackSender
from invocations.config import CallbackSettings
from invocations.store import Call
from runtime.logger import Logger


class _FlakyStore:
    """Fails the first read of due callbacks like a lost connection, then has one."""

    def __init__(self, call: Call) -> None:
        self.reads = 0
        self.results: list[tuple[str, str, int | None]] = []
        self._call: Call | None = call

    async def callbacks_due(self, limit: int) -> tuple[list[Call], float | None]:
        self.reads += 1
        if self.reads == 1:
            raise ConnectionResetError("nats: connection closed")
        call, self._call = self._call, None
        return ([call] if call is not None else []), None

    async def callback_result(self, call: Call, state: str, last_status: int | None,
                              due_in: float) -> None:
        self.results.append((call.id, state, last_status))


async def _receiver() -> tuple[web.AppRunner, str, list[str]]:
    got: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        got.append(request.headers["X-Call-Id"])
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/hook", got


def test_callback_loop_survives_a_store_error() -> None:
    async def main() -> tuple[list[str], _FlakyStore]:
        runner, url, got = await _receiver()
        call = Call(id="c1", function="f", method="POST", path="/", query={}, headers={},
                    body=b"x", content_type="", callback_url=url, accepted_ns=time.time_ns())
        call.state, call.status, call.callback_state = "succeeded", 200, "pending"
        store = _FlakyStore(call)
        settings = CallbackSettings()
        sender = CallbackSender(store, lambda _: settings, lambda _: 1,  # type: ignore[arg-type]
                                lambda _: None, Logger("test", 50, "json"))
        await sender.start()
        try:
            deadline = time.monotonic() + 10
            while not store.results and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            await sender.close()
            await runner.cleanup()
        return got, store

    got, store = asyncio.run(main())
    assert store.reads >= 2  # it read again after the error
    assert got == ["c1"]
    assert store.results == [("c1", "delivered", 202)]
