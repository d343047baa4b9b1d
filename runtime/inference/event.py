"""The event an inference handler sees.

``event.inputs`` maps input names to numpy arrays (no JSON in between).
``event.body`` is the protocol's JSON request, as bytes, for handlers written
against the plain Nuclio API (``request = json.loads(event.body)``, with
``model_name`` and ``model_version`` filled in); it is built on first access.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from runtime.events import Event, RawEvent, trigger_info
from runtime.inference.jsontext import json_data, object_json, tensor_list_json
from runtime.inference.model import InferenceRequest
from runtime.responses import JSON


class InferenceEvent(Event):
    def __init__(self, raw: RawEvent, request: InferenceRequest) -> None:
        self._fill(raw, trigger_info(raw.trigger_kind, raw.trigger_name))
        self._body: bytes | None = None
        self.content_type = JSON
        self.size = len(raw.body)
        self.inputs: dict[str, np.ndarray] = request.inputs
        self.request = request
        self.fields = {"model_name": request.model_name,
                       "model_version": request.model_version,
                       "request_id": request.id, "parameters": request.parameters}
        headers = dict(raw.headers)
        headers["X-Model-Name"] = request.model_name
        headers["X-Model-Version"] = request.model_version
        self.headers = headers

    @property
    def body(self) -> Any:
        if self._body is None:
            self._body = request_json(self.request)
        return self._body

    @body.setter
    def body(self, value: Any) -> None:
        self._body = value


def request_json(request: InferenceRequest) -> bytes:
    """The request as the protocol's JSON document: id, model_name, model_version,
    parameters (if any), inputs (flat data), outputs (names, if requested).
    Tensor data is written straight from the arrays (``json_data``)."""
    head: dict[str, Any] = {"id": request.id, "model_name": request.model_name,
                            "model_version": request.model_version}
    if request.parameters:
        head["parameters"] = request.parameters
    inputs = tensor_list_json([
        ({"name": name, "datatype": request.datatypes[name], "shape": list(array.shape)},
         json_data(array, request.datatypes[name]))
        for name, array in request.inputs.items()])
    tail = None
    if request.outputs is not None:
        tail = {"outputs": [{"name": o.name} for o in request.outputs]}
    return object_json(head, "inputs", inputs, tail)
