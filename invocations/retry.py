"""When a failed attempt is tried again, and when a call is given up (dead).

Exponential back-off with jitter, from ``initialDelay`` doubling (``multiplier``)
up to ``maxDelay``; a ``Retry-After`` the handler returned (seconds or an HTTP
date) is honoured when it asks for longer. The attempt count lives in the store,
so the schedule continues where it was after a restart.
"""

from __future__ import annotations

import email.utils
import random
import time

from invocations.config import RetryPolicy


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now (None when absent or unreadable)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff_delay(policy: RetryPolicy, attempts: int, retry_after: float | None = None,
                  rng: random.Random | None = None) -> float:
    """Seconds to wait after the ``attempts``-th attempt failed (attempts >= 1)."""
    base = min(policy.maxDelay, policy.initialDelay * policy.multiplier ** (attempts - 1))
    jitter = policy.jitter
    delay = base * (1.0 + (rng or random).uniform(-jitter, jitter)) if jitter else base
    if retry_after is not None:
        delay = max(delay, min(retry_after, max(policy.maxDelay, 3600.0)))
    return max(0.0, delay)


def is_retryable(policy: RetryPolicy, status: int) -> bool:
    return status in policy.statuses
