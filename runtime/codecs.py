"""Codecs: protocols a worker decodes before the handler and encodes after it.

A trigger whose wire format carries structured data (tensors) names a codec in
``RawEvent.codec``; the worker then builds the handler's event and the response
with it, in parallel across workers, instead of the trigger doing that work on
the processor's event loop.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from runtime.events import RawEvent
from runtime.responses import RawResponse


class Codec(Protocol):
    def decode(self, raw: RawEvent) -> Any:
        """The handler's event; raises nuclio_sdk.ExceptionWithResponse for bad input."""

    def encode(self, output: Any, event: Any, raw: RawEvent) -> RawResponse:
        """The response for a handler's output; may raise ExceptionWithResponse."""


CODECS: dict[str, str] = {
    "openinference-rest": "runtime.inference.codec:RestCodec",
    "openinference-grpc": "runtime.inference.codec:GrpcCodec",
}
_loaded: dict[str, Codec] = {}


def codec_for(name: str) -> Codec:
    codec = _loaded.get(name)
    if codec is None:
        module, _, attr = CODECS[name].partition(":")
        codec = _loaded[name] = getattr(importlib.import_module(module), attr)()
    return codec
