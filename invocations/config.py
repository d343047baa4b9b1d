"""The ``async`` attribute of an http trigger, validated at start-up.

Names are camelCase like the rest of Nuclio's trigger attributes; the
Kubernetes renderer relies on ``enabled``, ``backend``, ``directory`` and
``nats.{url,stream,consumer}`` keeping these exact names.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.config import Duration

DEFAULT_DIRECTORY = "/var/lib/nuclio/async"
DEFAULT_RETRY_STATUSES = [408, 429, 500, 502, 503, 504]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


class RetryPolicy(_Model):
    """How a call whose attempt failed with a retryable status is tried again."""

    maxAttempts: int = Field(10, ge=1, le=1000)
    initialDelay: Duration = 10.0
    maxDelay: Duration = 120.0
    multiplier: float = Field(2.0, ge=1.0)
    jitter: float = Field(0.1, ge=0.0, le=1.0)
    statuses: list[int] = Field(default_factory=lambda: list(DEFAULT_RETRY_STATUSES))

    @model_validator(mode="after")
    def _delays(self) -> RetryPolicy:
        if self.maxDelay < self.initialDelay:
            raise ValueError("maxDelay must not be below initialDelay")
        return self


class CallbackSettings(_Model):
    """The POST to ``X-Callback-Url`` once a call is final."""

    maxAttempts: int = Field(10, ge=1, le=1000)
    initialDelay: Duration = 1.0
    maxDelay: Duration = 60.0
    timeout: Duration = 10.0
    # HMAC-SHA256 key; never logged. ``signingSecretEnv`` names an env var holding it.
    signingSecret: str | None = Field(None, repr=False)
    signingSecretEnv: str | None = None
    maxInflight: int = Field(16, ge=1, le=1024)

    def secret(self) -> bytes | None:
        value = self.signingSecret
        if value is None and self.signingSecretEnv:
            value = os.environ.get(self.signingSecretEnv)
        return value.encode() if value else None


class Retention(_Model):
    """How long and how much finished calls (and their responses) are kept."""

    finished: Duration = 24 * 3600.0
    maxBytes: int = Field(256 * 1024 * 1024, ge=0)
    maxResultBytes: int = Field(1024 * 1024, ge=0)
    maxDeadLetters: int = Field(10_000, ge=1)


_NAME = r"^[A-Za-z0-9_-]{1,200}$"  # JetStream stream/consumer/bucket names (no . * > space)


class NatsSettings(_Model):
    url: str = "nats://127.0.0.1:4222"
    stream: str = Field("nuclio-async", pattern=_NAME)
    consumer: str = Field("nuclio-async-workers", pattern=_NAME)
    ackWait: Duration = Field(30.0, gt=0)
    bucket: str = Field("nuclio-async-calls", pattern=_NAME)
    connectTimeout: Duration = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _url(self) -> NatsSettings:
        # Checked here, not by a field pattern, so the error never echoes a URL that
        # may carry user:password.
        if not re.match(r"^(nats|tls|ws|wss)://\S+$", self.url):
            raise ValueError("url: expected nats://host:port (or tls://, ws://, wss://)")
        return self


class AsyncSettings(_Model):
    enabled: bool = False
    backend: Literal["sqlite", "nats"] = "sqlite"
    directory: str | None = None
    # Async calls running at once on the trigger's pool (default: half the pool, >= 1).
    maxInflight: int | None = Field(None, ge=1, le=4096)
    maxQueued: int = Field(100_000, ge=1)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    callback: CallbackSettings = Field(default_factory=CallbackSettings)
    retention: Retention = Field(default_factory=Retention)
    nats: NatsSettings = Field(default_factory=NatsSettings)

    def max_inflight(self, pool_size: int) -> int:
        return self.maxInflight or max(1, pool_size // 2)


def fallback_directory() -> str:
    """Where the default store goes when /var/lib/nuclio cannot be created (e.g. not
    root): a per-user directory under the temp dir, logged as a warning."""
    return os.path.join(tempfile.gettempdir(), f"nuclio-async-{os.getuid()}")
