"""Sleep until woken or a timeout, whichever comes first, and stay cancellable.

``asyncio.wait_for(event.wait(), t)`` on Python 3.11 can swallow a cancellation
that arrives as the inner wait finishes, leaving a shutdown hanging; a timeout
scope around the wait has no inner task and no such race.
"""

from __future__ import annotations

import asyncio
import contextlib


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, timeout)):
            await event.wait()
