"""The Open Inference message classes, wherever protobuf already knows them.

Our generated ``open_inference_pb2`` and tritonclient's modules define the same
``inference.*`` names, and protobuf's default pool refuses a second definition.
So when something in the process (a handler that calls Triton) registered them
first, we use those classes (same messages, same wire format) instead of
importing ours. Import this lazily, after the handler has been loaded.
"""

from __future__ import annotations

import functools
from typing import Any

from google.protobuf import descriptor_pool, message_factory


class _Messages:
    def __init__(self) -> None:
        pool = descriptor_pool.Default()
        try:
            pool.FindMessageTypeByName("inference.ModelInferRequest")
        except KeyError:
            from protos import open_inference_pb2  # noqa: F401  (registers the names)
        self._pool = pool

    def __getattr__(self, name: str) -> Any:  # only for names not looked up before
        if name.startswith("_"):
            raise AttributeError(name)
        cls = message_factory.GetMessageClass(
            self._pool.FindMessageTypeByName(f"inference.{name}"))
        setattr(self, name, cls)
        return cls


@functools.cache
def messages() -> Any:
    """``messages().ModelInferRequest`` and friends."""
    return _Messages()
