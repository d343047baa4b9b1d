"""Async workers: ``async def`` handlers on the processor's own event loop.

One context and one ``init_context`` run serve every slot; ``numWorkers`` is
the number of events in flight at once. A timed-out event is cancelled in
place, so the slot is reused rather than replaced.
"""

from __future__ import annotations

import asyncio

from runtime.function import FunctionRunner, Payload, Result
from runtime.pool import WorkerLost, WorkerStartError


class SharedAsyncFunction:
    """The one runner all async slots share; ``init_context`` runs once."""

    def __init__(self, runner: FunctionRunner) -> None:
        self.runner = runner
        self._init: asyncio.Task[None] | None = None
        self._terminated = False

    async def ensure_initialised(self) -> None:
        if self._init is None:
            self._init = asyncio.get_running_loop().create_task(self.runner.init_async())
        try:
            await asyncio.shield(self._init)
        except Exception as exc:
            raise WorkerStartError(f"init_context raised {type(exc).__name__}: {exc}") from exc

    def terminate_once(self) -> None:
        if not self._terminated:
            self._terminated = True
            self.runner.terminate()


class AsyncSlot:
    def __init__(self, worker_id: str, shared: SharedAsyncFunction) -> None:
        self.worker_id = worker_id
        self._shared = shared
        self._run = shared.runner.run_async

    async def load(self) -> None:
        """The handler was imported by the processor already."""

    async def init(self) -> None:
        await self._shared.ensure_initialised()

    async def run(self, payload: Payload, timeout: float | None) -> Result:
        if timeout is None:
            return await self._run(payload)
        try:
            async with asyncio.timeout(timeout):
                return await self._run(payload)
        except TimeoutError:
            raise WorkerLost(408, f"event timed out after {timeout:g}s", replace=False) from None

    def kill(self) -> None:
        pass

    async def stop(self, timeout: float) -> None:
        self._shared.terminate_once()
