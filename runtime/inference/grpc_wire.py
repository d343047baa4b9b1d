"""The gRPC wire form: ``ModelInferRequest`` in, ``ModelInferResponse`` out.

Inputs come either as typed ``contents`` or as ``raw_input_contents`` (one
entry per input, as tritonclient sends them); outputs always go back as
``raw_output_contents``, as Triton answers, which every client reads.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from protos.open_inference import messages
from runtime.events import RawEvent
from runtime.inference.errors import bad_request
from runtime.inference.event import InferenceEvent
from runtime.inference.model import (
    ArrayMaker,
    InferenceRequest,
    ModelSpec,
    RequestedOutput,
    checker,
)
from runtime.inference.outputs import collect
from runtime.inference.tensors import DTYPES, bytes_array, element_count, from_raw, to_raw
from runtime.responses import RawResponse

GRPC_CONTENT_TYPE = "application/grpc+proto"

# Datatype -> the typed ``contents`` field that carries it (FP16 has none: raw only).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
    "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
    "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}


def _parameters(params: Any) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        kind = value.WhichOneof("parameter_choice")
        out[key] = getattr(value, kind) if kind else None
    return out


def _parameter(value: Any) -> Any:
    if isinstance(value, bool):
        return messages().InferParameter(bool_param=value)
    if isinstance(value, int):
        return messages().InferParameter(int64_param=value)
    if isinstance(value, float):
        return messages().InferParameter(double_param=value)
    return messages().InferParameter(string_param=str(value))


def _from_raw_contents(data: bytes, datatype: str, shape: tuple[int, ...], what: str
                       ) -> np.ndarray:
    return from_raw(datatype, shape, data, what)


def _from_contents(tensor: Any, datatype: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    field = _CONTENTS_FIELD.get(datatype)
    if field is None:
        raise bad_request(f"{what}: {datatype} tensors must use raw_input_contents")
    values = getattr(tensor.contents, field)
    count = element_count(shape)
    if len(values) != count:
        raise bad_request(f"{what}: shape {list(shape)} needs {count} elements, "
                          f"got {len(values)}")
    dtype = DTYPES[datatype]
    if dtype is None:
        return bytes_array(list(values), shape)
    try:
        return np.array(values, dtype=dtype).reshape(shape)
    except (ValueError, OverflowError) as exc:
        raise bad_request(f"{what}: data does not fit datatype {datatype}: {exc}") from None


def decode(raw: RawEvent, spec: ModelSpec) -> InferenceRequest:
    message = messages().ModelInferRequest()
    try:
        message.ParseFromString(raw.body)
    except DecodeError as exc:
        raise bad_request(f"malformed ModelInferRequest: {exc}") from None
    checker(spec).model(message.model_name, message.model_version)
    params = message.parameters
    request = InferenceRequest(spec.name, spec.version, message.id,
                               _parameters(params) if params else {})
    inputs = message.inputs
    raw_contents = message.raw_input_contents
    if raw_contents and len(raw_contents) != len(inputs):
        raise bad_request(f"raw_input_contents has {len(raw_contents)} entries for "
                          f"{len(inputs)} inputs")
    if not inputs:
        raise bad_request("inputs must not be empty")
    for position, tensor in enumerate(inputs):
        array_of: ArrayMaker = (functools.partial(_from_raw_contents, raw_contents[position])
                                if raw_contents else functools.partial(_from_contents, tensor))
        request.add_input(spec, tensor.name, tensor.datatype, list(tensor.shape), array_of)
    request.check_complete(spec)
    if message.outputs:
        request.outputs = [RequestedOutput(o.name) for o in message.outputs]
    return request


def encode(result: Any, event: InferenceEvent, spec: ModelSpec) -> RawResponse:
    request = event.request
    outputs = collect(result, spec, request.outputs)
    response = messages().ModelInferResponse(model_name=spec.name, model_version=spec.version,
                                             id=request.id)
    for key, value in outputs.parameters.items():
        response.parameters[key].CopyFrom(_parameter(value))
    add_output, raw_outputs = response.outputs.add, response.raw_output_contents
    for name, datatype, array in outputs.tensors:
        add_output(name=name, datatype=datatype, shape=array.shape)
        raw_outputs.append(to_raw(array, datatype))
    return RawResponse(200, {}, response.SerializeToString(), GRPC_CONTENT_TYPE, event.id)
