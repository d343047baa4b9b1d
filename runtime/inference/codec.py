"""The worker-side codec the openinference trigger names in its events."""

from __future__ import annotations

from typing import Any

from runtime.events import RawEvent
from runtime.inference import grpc_wire, rest
from runtime.inference.event import InferenceEvent
from runtime.inference.model import ModelSpec
from runtime.responses import RawResponse

GRPC_CONTENT_TYPE = "application/grpc+proto"


class OpenInferenceCodec:
    """``raw.codec`` is ``("openinference", (wire, ModelSpec))``; wire is rest or grpc."""

    @staticmethod
    def decode(raw: RawEvent) -> InferenceEvent:
        wire, spec = _options(raw)
        module = rest if wire == "rest" else grpc_wire
        return InferenceEvent(raw, module.decode(raw, spec))

    @staticmethod
    def encode(output: Any, event: InferenceEvent, raw: RawEvent) -> RawResponse:
        wire, spec = _options(raw)
        if wire == "rest":
            return rest.encode(output, event, spec)
        return RawResponse(200, {}, grpc_wire.encode(output, event, spec), GRPC_CONTENT_TYPE,
                           raw.id)


def _options(raw: RawEvent) -> tuple[str, ModelSpec]:
    assert raw.codec is not None
    wire, spec = raw.codec[1]
    return wire, spec
