"""What every trigger kind has: an attributes model, a life cycle, a pool.

A trigger turns traffic into ``RawEvent``s and asks its pool to run them; it
never calls the handler itself. Sockets are bound in ``bind`` (so a port in
use is a config error before anything listens) and served from ``start``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict

from core.function_config import ResolvedTrigger
from core.metrics import TriggerMetrics
from core.sink import Sink
from runtime.logger import Logger
from runtime.pool import WorkerPool


class StopRequest(Protocol):
    def __call__(self, exit_code: int = 0, reason: str | None = None) -> None: ...


class TriggerAttributes(BaseModel):
    # Unknown keys are reported as warnings by the processor, not rejected.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


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

    @property
    def ready(self) -> bool:
        """False makes ``/ready`` answer 503 (``/live`` stays 200): e.g. a stream trigger
        whose broker is not connected, so no traffic is routed to a pod that cannot
        consume, while Kubernetes' liveness probe leaves it alone."""
        return True

    def listen_addresses(self) -> list[str]:
        """Where the trigger listens (``host:port``), for the status page: its bound
        ``address`` when it has one, else the ports its attributes ask for."""
        address = getattr(self, "address", None)
        if address is not None:
            return [str(address)]
        return [f":{port}" for port in self.listen_ports()]

    def source_state(self) -> dict[str, Any] | None:
        """For triggers that read from an upstream source (mjpeg, rtsp): ``state``
        (connecting, connected, reconnecting, down, stopped), ``since`` (epoch seconds),
        ``last_error`` and the ``url`` without credentials. None for the others."""
        return None

    def bind(self, default_host: str) -> None:
        """Reserves listening sockets (``default_host`` where the config names no host);
        raises ConfigError when one cannot be had."""

    @abstractmethod
    async def start(self) -> None: ...

    async def stop_accepting(self) -> None:
        """Stops taking new traffic; events already accepted keep running."""

    async def close(self) -> None:
        """Releases everything once in-flight events are done."""


def public_url(url: str) -> str:
    """The URL without user:password, for events and logs."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.hostname or ""
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc))
