"""The worker-side codecs the openinference trigger names in its events.

``raw.codec`` is ``("openinference-rest" | "openinference-grpc", spec)``, the
spec a ``ModelSpec`` or its ``spec_to_wire`` form. Each codec imports its wire
module on first use, so a REST-only worker never loads protobuf.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, ClassVar

from runtime.events import RawEvent
from runtime.inference.event import InferenceEvent
from runtime.inference.model import spec_from_wire
from runtime.memory import keep_large_buffers
from runtime.responses import RawResponse


class _WireCodec:
    # decode(raw, spec) -> InferenceRequest, encode(output, event, spec) -> RawResponse
    module: ClassVar[str]
    _wire: ModuleType | None = None

    @property
    def wire(self) -> ModuleType:
        if self._wire is None:
            keep_large_buffers()  # tensors are decoded and encoded in this process
            self._wire = importlib.import_module(self.module)
        return self._wire

    def decode(self, raw: RawEvent) -> InferenceEvent:
        assert raw.codec is not None
        return InferenceEvent(raw, self.wire.decode(raw, spec_from_wire(raw.codec[1])))

    def encode(self, output: Any, event: InferenceEvent, raw: RawEvent) -> RawResponse:
        assert raw.codec is not None
        response: RawResponse = self.wire.encode(output, event, spec_from_wire(raw.codec[1]))
        return response


class RestCodec(_WireCodec):
    module: ClassVar[str] = "runtime.inference.rest"


class GrpcCodec(_WireCodec):
    module: ClassVar[str] = "runtime.inference.grpc_wire"
