"""What every sink kind has: an attributes model, a life cycle and a non-blocking write.

A sink receives the results a trigger's handler produced (frames, audio chunks)
and sends them on: to players, a WebSocket endpoint, a webhook. It never knows
which trigger fed it, and it never slows that trigger down: ``write`` returns at
once, and whatever cannot be sent in time is dropped and counted.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict

from runtime.logger import Logger


class SinkItem(NamedTuple):
    """One handler result on its way out."""

    body: bytes
    content_type: str
    # Metadata of the input it came from: frame_num, timestamp (epoch seconds), url, and
    # media parameters (width, height, sample_rate, channels) where the trigger knows them.
    fields: Mapping[str, Any]


class SinkAttributes(BaseModel):
    # Unknown keys are reported as warnings by the processor, not rejected.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


class SinkSpec(BaseModel):
    """A trigger's ``sink`` attribute: ``{kind: ..., attributes: {...}}``."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    kind: str
    attributes: dict[str, Any] = {}


class SinkMetrics:
    """Counts every item a sink sends or drops (by reason), per sink."""

    def __init__(self, items: Counter, labels: list[str]) -> None:
        self._items = items
        self._labels = labels
        self._children: dict[tuple[str, str], Any] = {}

    def _inc(self, outcome: str, reason: str, amount: int = 1) -> None:
        child = self._children.get((outcome, reason))
        if child is None:
            child = self._children[(outcome, reason)] = self._items.labels(
                *self._labels, outcome, reason)
        child.inc(amount)

    def sent(self, amount: int = 1) -> None:
        self._inc("sent", "", amount)

    def dropped(self, reason: str, amount: int = 1) -> None:
        self._inc("dropped", reason, amount)


class Sink(ABC):
    kind: ClassVar[str]
    Attributes: ClassVar[type[SinkAttributes]] = SinkAttributes

    def __init__(self, name: str, attributes: Any, metrics: SinkMetrics, logger: Logger
                 ) -> None:
        self.name = name  # the owning trigger's name: sinks are per trigger
        self.attributes = attributes
        self.metrics = metrics
        self.logger = logger

    def bind(self, default_host: str) -> None:
        """Reserves listening sockets for server-side sinks (mjpeg, rtsp); a taken port is a
        ConfigError here, before anything listens."""

    async def start(self) -> None:
        """Starts serving or connecting. A peer that cannot be reached is retried in the
        background; it never fails the processor."""

    @abstractmethod
    def write(self, item: SinkItem) -> None:
        """Hands an item over without blocking; drops (counted) when the sink is behind."""

    def cork(self) -> None:
        """A burst of items follows (frames read together from a source that outran us):
        a sink may hold what it is written until ``uncork`` and send it in one go."""

    def uncork(self) -> None:
        """The burst is over: anything held goes out now."""

    def status(self) -> dict[str, Any]:
        """Shown under the trigger in ``/ready``'s details (e.g. connected clients)."""
        return {}

    async def close(self) -> None:
        """Stops at shutdown, after the owning trigger has stopped writing."""
