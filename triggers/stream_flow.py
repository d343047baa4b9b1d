"""What the message-stream triggers (nats, nats-jetstream, mqtt) share: a bound on the
messages in flight, and the rule that says whether a handler's answer counts as handled.

A stream trigger takes a message off the broker only when a worker slot is free, so
at most ``numWorkers`` messages are in flight per trigger and nothing piles up in the
processor: unacknowledged messages wait at the broker, where they are durable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

# Statuses the broker should see as "not handled, deliver again": the worker
# crashed or failed (5xx), the event overran its timeout (408), or back-pressure (429).
_RETRY_STATUSES = frozenset({408, 429})


def handled(status: int) -> bool:
    """True when the message was handled and may be acknowledged. A 4xx other than 408
    and 429 is the function's verdict on the message (e.g. a malformed body): handled,
    since delivering it again cannot change the answer."""
    return status < 500 and status not in _RETRY_STATUSES


class InFlight:
    """Slots for messages being handled, and the tasks handling them."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self._changed = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def free(self) -> int:
        return self.limit - self.count

    async def wait_free(self) -> int:
        """Waits until at least one slot is free; returns how many are."""
        while self.count >= self.limit:
            self._changed.clear()
            await self._changed.wait()
        return self.limit - self.count

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Runs ``work`` in a slot (taken now, freed when it ends, whatever happens)."""
        self.count += 1
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.count -= 1
        self._changed.set()

    async def idle(self, timeout: float) -> bool:
        """Waits for every message in flight to finish; False if ``timeout`` ran out."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            return not pending
        return True

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()
