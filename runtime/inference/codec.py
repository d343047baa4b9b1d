"""The worker-side codecs the openinference trigger names in its events.

``raw.codec`` is ``("openinference-rest" | "openinference-grpc", ModelSpec)``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, ClassVar

from runtime.events import RawEvent
from runtime.inference import grpc_wire, rest
from runtime.inference.event import InferenceEvent
from runtime.responses import RawResponse


class _WireCodec:
    wire: ClassVar[ModuleType]  # decode(raw, spec) -> InferenceRequest, encode(...) -> RawResponse

    def decode(self, raw: RawEvent) -> InferenceEvent:
        assert raw.codec is not None
        return InferenceEvent(raw, self.wire.decode(raw, raw.codec[1]))

    def encode(self, output: Any, event: InferenceEvent, raw: RawEvent) -> RawResponse:
        assert raw.codec is not None
        response: RawResponse = self.wire.encode(output, event, raw.codec[1])
        return response


class RestCodec(_WireCodec):
    wire: ClassVar[ModuleType] = rest


class GrpcCodec(_WireCodec):
    wire: ClassVar[ModuleType] = grpc_wire
