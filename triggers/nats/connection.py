"""One supervised NATS connection per trigger: options, credentials, reconnects, state.

nats-py reconnects by itself once a connection has been made, but refuses to start
when the first connection fails and gives up after ``maxReconnects``. A stream
trigger must do neither: a broker that is down at start (or for longer than the
reconnect budget) must not end the processor. So ``NatsSupervisor`` wraps it: it
connects with back-off until the broker answers, hands the connection to the
trigger's ``consume`` coroutine, and starts over when the connection closes for
good. Its state (``connecting``, ``connected``, ``reconnecting``, ``closed``) and
the last error go to ``/ready``; credentials never appear in either, nor in logs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote, urlsplit

import nats
from nats.aio.client import Client
from pydantic import Field

from core.attribute_types import Duration
from core.config import ConfigError
from core.function_config import ResolvedTrigger
from runtime.backoff import Backoff
from runtime.logger import Logger
from triggers.base import TriggerAttributes, public_url

# nats.go's defaults, which Nuclio's NATS triggers inherit.
DEFAULT_MAX_RECONNECTS = 60
DEFAULT_RECONNECT_WAIT = 2.0
DEFAULT_RECONNECT_JITTER = 0.1
DEFAULT_CONNECT_TIMEOUT = 2.0


class NatsConnectionAttributes(TriggerAttributes):
    """What both NATS triggers accept about the connection itself."""

    username: str | None = Field(None, alias="user")
    password: str | None = None
    token: str | None = None
    maxReconnects: int = Field(DEFAULT_MAX_RECONNECTS, ge=-1)  # -1: forever
    reconnectWait: Duration = Field(DEFAULT_RECONNECT_WAIT, gt=0)
    reconnectJitter: Duration = Field(DEFAULT_RECONNECT_JITTER, ge=0)
    connectTimeout: Duration = Field(DEFAULT_CONNECT_TIMEOUT, gt=0)
    # Bodies above this are refused (counted as body_too_large), never handed on.
    maxMessageSize: int | None = Field(None, ge=1)


def checked_nats_url(config: ResolvedTrigger) -> str:
    """The trigger ``url`` if it is ``nats://host[:port]`` (or ``tls://``); ConfigError else."""
    path = f"{config.yaml_path}.url"
    url = (config.url or "").strip()
    if not url:
        raise ConfigError(f"{path}: required, e.g. 'nats://127.0.0.1:4222'")
    servers = [part.strip() for part in url.split(",") if part.strip()]
    for server in servers:
        try:
            parts = urlsplit(server)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if parts.scheme not in ("nats", "tls") or not parts.hostname:
            raise ConfigError(f"{path}: expected a URL such as 'nats://127.0.0.1:4222', "
                              f"got {public_url(server)!r}")
    return ",".join(servers)


class Redactor:
    """Removes the password/token (and URLs holding them) from texts we log or expose."""

    def __init__(self, url: str, secrets: list[str | None]) -> None:
        self._pairs: list[tuple[str, str]] = []
        for server in url.split(","):
            if public_url(server) != server:
                self._pairs.append((server, public_url(server)))
            parts = urlsplit(server)
            for secret in (parts.password, parts.username):
                if secret:
                    secrets.append(unquote(secret))
        self._pairs += [(s, "***") for s in secrets if s]

    def __call__(self, text: str) -> str:
        for secret, replacement in self._pairs:
            text = text.replace(secret, replacement)
        return text


Consume = Callable[[Client], Awaitable[None]]


class NatsSupervisor:
    """Keeps a connection up for ``consume`` until ``stop``; reports its state."""

    def __init__(self, config: ResolvedTrigger, attributes: NatsConnectionAttributes,
                 logger: Logger, consume: Consume,
                 on_error: Callable[[Exception], None] | None = None) -> None:
        self.url = checked_nats_url(config)
        self.public_url = ",".join(public_url(s) for s in self.url.split(","))
        self._attrs = attributes
        self._name = config.name
        self._logger = logger
        self._consume = consume
        self._on_error = on_error
        # Credentials: attributes, else Nuclio's trigger-level username/password, else the URL.
        self._username = attributes.username or config.username
        self._password = attributes.password or config.password
        self._redact = Redactor(self.url, [self._password, attributes.token])
        self.state = "connecting"
        self.last_error: str | None = None
        self.connects = 0
        self.client: Client | None = None
        self._stopping = asyncio.Event()
        # Set when the current connection has closed for good (reconnects exhausted).
        self.closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {"url": self.public_url, "state": self.state,
                                   "connects": self.connects}
        if self.last_error and self.state != "connected":
            details["error"] = self.last_error
        return details

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Ends the consumer and closes the connection (after a drain when possible)."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        client, self.client = self.client, None
        if client is not None and not client.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.close(), 2.0)
        self.state = "closed"

    # -- the loop ------------------------------------------------------------------------
    async def _run(self) -> None:
        attrs = self._attrs
        backoff = Backoff(attrs.reconnectWait, max(attrs.reconnectWait, 30.0),
                          jitter=min(0.5, attrs.reconnectJitter / attrs.reconnectWait))
        while not self._stopping.is_set():
            try:
                client = await self._connect()
            except Exception as exc:  # every failure means: wait, retry
                self._failed(exc, backoff.attempts)
                if await backoff.wait(self._stopping):
                    return
                continue
            backoff.reset()
            self.closed = asyncio.Event()
            self.client = client
            self.connects += 1
            self.state = "connected"
            self._logger.info_with("Connected to NATS", trigger=self._name,
                                   url=self.public_url)
            try:
                await self._consume(client)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the consumer failed: start over
                self._failed(exc, 0)
                if await backoff.wait(self._stopping):
                    return
            finally:
                if not client.is_closed:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(client.close(), 2.0)
                self.client = None
            if not self._stopping.is_set():
                self.state = "connecting"

    async def _connect(self) -> Client:
        attrs = self._attrs
        options: dict[str, Any] = {}
        if self._username:
            options["user"] = self._username
            options["password"] = self._password or ""
        if attrs.token is not None:
            options["token"] = attrs.token
        return await nats.connect(
            servers=self.url.split(","), name=f"nuclio-{self._name}",
            connect_timeout=attrs.connectTimeout, reconnect_time_wait=attrs.reconnectWait,
            max_reconnect_attempts=attrs.maxReconnects, allow_reconnect=True,
            error_cb=self._error_cb, disconnected_cb=self._disconnected_cb,
            reconnected_cb=self._reconnected_cb, closed_cb=self._closed_cb, **options)

    def _failed(self, exc: Exception, attempts: int) -> None:
        message = self._redact(str(exc) or type(exc).__name__)
        self.last_error = message
        self.state = "connecting"
        log = self._logger.warn_with if attempts < 1 else self._logger.debug_with
        log("NATS not reachable, retrying", trigger=self._name, url=self.public_url,
            error=message)

    async def _error_cb(self, exc: Exception) -> None:
        if self._on_error is not None:
            self._on_error(exc)
        self.last_error = self._redact(str(exc) or type(exc).__name__)

    async def _disconnected_cb(self) -> None:
        if not self._stopping.is_set() and self.state == "connected":
            self.state = "reconnecting"
            self._logger.warn_with("Disconnected from NATS", trigger=self._name,
                                   url=self.public_url, error=self.last_error)

    async def _reconnected_cb(self) -> None:
        self.state = "connected"
        self.connects += 1
        self._logger.info_with("Reconnected to NATS", trigger=self._name, url=self.public_url)

    async def _closed_cb(self) -> None:
        self.closed.set()
        if not self._stopping.is_set():
            self.state = "connecting"
