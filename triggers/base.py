"""What every trigger kind has: an attributes model, a life cycle, a pool.

A trigger turns traffic into ``RawEvent``s and asks its pool to run them; it
never calls the handler itself. Sockets are bound in ``bind`` (so a port in
use is a config error before anything listens) and served from ``start``.
"""

from __future__ import annotations

import errno
import socket
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict

from processor.config import Address, ConfigError, ResolvedTrigger
from processor.metrics import TriggerMetrics
from runtime.logger import Logger
from runtime.pool import WorkerPool
from sinks.base import Sink


class StopRequest(Protocol):
    def __call__(self, exit_code: int = 0, reason: str | None = None) -> None: ...


class TriggerAttributes(BaseModel):
    # Unknown keys are reported as warnings by the processor, not rejected.
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Trigger(ABC):
    kind: ClassVar[str]
    Attributes: ClassVar[type[TriggerAttributes]] = TriggerAttributes

    def __init__(self, config: ResolvedTrigger, attributes: Any, pool: WorkerPool,
                 metrics: TriggerMetrics, logger: Logger,
                 request_stop: StopRequest = lambda code=0, reason=None: None) -> None:
        self.config = config
        # Ends the whole processor (with an exit code), e.g. when a job trigger is done.
        self.request_stop = request_stop
        self.name = config.name
        self.attributes = attributes
        self.pool = pool
        self.metrics = metrics
        self.logger = logger
        # Set by the processor when the attributes name a ``sink``; the processor starts
        # and closes it around the trigger.
        self.sink: Sink | None = None

    def listen_ports(self) -> list[int]:
        """Ports the attributes ask for (known before binding), so the processor can leave
        out its implicit default-http trigger when one of them is 8080."""
        return []

    def status(self) -> dict[str, Any]:
        """Extra details for ``/ready`` (e.g. the state of an upstream source)."""
        return {}

    def bind(self, default_host: str) -> None:
        """Reserves listening sockets (``default_host`` where the config names no host);
        raises ConfigError when one cannot be had."""

    @abstractmethod
    async def start(self) -> None: ...

    async def stop_accepting(self) -> None:
        """Stops taking new traffic; events already accepted keep running."""

    async def close(self) -> None:
        """Releases everything once in-flight events are done."""


# Addresses this process has bound, with the YAML path that asked for each. Two
# SO_REUSEADDR sockets may bind one port on Linux while neither listens, so the
# kernel would not catch a port named twice in the config.
_bound: dict[tuple[str, int], str] = {}
_WILDCARDS = ("0.0.0.0", "::")


def _check_not_bound_here(address: Address, yaml_path: str) -> None:
    if address.port == 0:
        return
    for (host, port), owner in _bound.items():
        if port == address.port and (host == address.host or host in _WILDCARDS
                                     or address.host in _WILDCARDS):
            raise ConfigError(f"{yaml_path}: port {address.port} on {address.host} is already "
                              f"used by {owner}; expected a free port")


def claim_address(address: Address, yaml_path: str) -> None:
    """Records an address a server other than ours (gRPC) binds, so that a port named
    twice in the config is a ConfigError naming both YAML paths."""
    _check_not_bound_here(address, yaml_path)
    _bound[(address.host, address.port)] = yaml_path


def bind_socket(address: Address, yaml_path: str) -> socket.socket:
    """Binds (without listening) so a taken port fails at start-up, with its YAML path."""
    _check_not_bound_here(address, yaml_path)
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((address.host, address.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{yaml_path}: port {address.port} on {address.host} is already "
                              "in use; expected a free port") from None
        raise ConfigError(f"{yaml_path}: cannot listen on {address}: {exc.strerror}") from None
    sock.setblocking(False)
    _bound[(address.host, address.port)] = yaml_path
    return sock


def public_url(url: str) -> str:
    """The URL without user:password, for events and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
