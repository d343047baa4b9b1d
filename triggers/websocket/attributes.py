"""The websocket trigger's attributes (the seed system's names), validated at start-up."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from core.config import ConfigError, parse_address
from triggers.base import TriggerAttributes

SEED_PROCESSING_INTERVAL_MS = 2000  # the seed's default when is_stream is set alone



class WebSocketAttributes(TriggerAttributes):
    port: int | None = Field(None, ge=0, le=65535)
    # The seed system's spelling: ":9000", "host:9000" or a bare port.
    websocket_addr: str | int | None = None
    path: str = "/ws"
    maxConnections: int = Field(1000, ge=1)
    maxMessageSize: int = Field(1 << 20, ge=1)
    reply: Literal["sender", "broadcast", "none"] = "sender"
    connectionEvents: bool = False
    queueSize: int = Field(64, ge=1)
    compression: bool = False  # permessage-deflate, when the client offers it
    is_stream: bool = False
    processing_interval: float | None = Field(None, ge=0)  # milliseconds
    chunk_bytes: int = Field(160_000, ge=1)
    max_bytes: int = Field(1_440_000, ge=1)
    trim_bytes: int = Field(1_120_000, ge=1)

    @field_validator("websocket_addr")
    @classmethod
    def _address_shape(cls, value: str | int | None) -> str | int | None:
        if value is not None:
            try:
                parse_address(str(value), "websocket_addr", "")
            except ConfigError:
                raise ValueError("expected ':9000', 'host:9000' or a port number") from None
        return value

    @field_validator("path")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("expected a path starting with '/', such as '/ws'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> WebSocketAttributes:
        if self.port is not None and self.websocket_addr is not None:
            raise ValueError("give either port or websocket_addr, not both")
        if self.is_stream:
            if self.processing_interval is None:
                self.processing_interval = SEED_PROCESSING_INTERVAL_MS
            elif self.processing_interval == 0:
                raise ValueError("is_stream needs processing_interval > 0 (milliseconds)")
            if not self.trim_bytes <= self.max_bytes or not self.chunk_bytes <= self.max_bytes:
                raise ValueError("expected chunk_bytes <= max_bytes and trim_bytes <= max_bytes")
        return self

    @property
    def interval(self) -> float:
        """Seconds between ticks; 0 when every message is its own event."""
        return (self.processing_interval or 0) / 1000.0
