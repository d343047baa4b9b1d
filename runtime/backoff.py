"""Reconnect delays for clients of peers that come and go (cameras, WebSocket sinks).

Doubling from ``first`` up to ``cap``, with a little jitter so that many clients
of one restarted peer do not all knock at the same instant; ``reset`` after a
connection that worked, so the next outage starts again from ``first``.
"""

from __future__ import annotations

import asyncio
import random


class Backoff:
    def __init__(self, first: float = 1.0, cap: float = 5.0, *, factor: float = 2.0,
                 jitter: float = 0.1) -> None:
        if first <= 0 or cap < first:
            raise ValueError("expected 0 < first <= cap")
        self.first = first
        self.cap = cap
        self._factor = factor
        self._jitter = jitter
        self._next = first
        self.attempts = 0  # failures since the last reset

    def next_delay(self) -> float:
        """The delay before the next attempt; each call moves one step up."""
        delay = self._next
        self._next = min(self.cap, delay * self._factor)
        self.attempts += 1
        return delay * (1.0 + random.uniform(-self._jitter, self._jitter))

    def reset(self) -> None:
        self._next = self.first
        self.attempts = 0

    async def wait(self, stop: asyncio.Event | None = None) -> bool:
        """Sleeps the next delay; True when ``stop`` was set meanwhile (give up)."""
        delay = self.next_delay()
        if stop is None:
            await asyncio.sleep(delay)
            return False
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            return False
        return True
