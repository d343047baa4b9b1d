"""The extproc trigger's attributes (see the README's table for each)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.config import parse_go_duration
from triggers.base import TriggerAttributes

ProcessorType = Literal["preprocessor", "postprocessor", "observeprocessor", "wrapprocessor"]


class ProcessingOptions(BaseModel):
    """Each option has its own default (the seed system reset all of them when one was set)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    logStream: bool = False
    logPhases: bool = False
    requestIdHeaderName: str = "x-request-id"
    bufferStreamedBodies: bool = True
    perRequestBodyBufferBytes: int = Field(4 << 20, ge=1)
    decompressBodies: bool = True

    @field_validator("requestIdHeaderName")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


class ExtProcAttributes(TriggerAttributes):
    type: ProcessorType
    port: int = Field(ge=0, le=65535)
    gracefulShutdownTimeout: float = 15.0  # seconds, or a Go duration such as "15s"
    maxConcurrentStreams: int = Field(100, ge=1)
    processingOptions: ProcessingOptions = ProcessingOptions()
    # No worker within workerAvailabilityTimeoutMilliseconds: true lets the message go on
    # unmodified, false answers 503.
    failOpen: bool = True
    observeQueueSize: int = Field(1024, ge=1)
    # grpc: Envoy's grpc_service (one stream per HTTP request, every phase); http: its
    # http_service (a JSON POST per message, headers only; triggers/extproc/http_transport).
    transport: Literal["grpc", "http"] = "grpc"

    @field_validator("gracefulShutdownTimeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_go_duration(value)
