"""The REST wire form: JSON, with or without the binary tensor data extension.

With the extension, the body is a JSON header of ``Inference-Header-Content-Length``
bytes followed by the tensors' binary data in input order; an input that uses it
says how many bytes in ``parameters.binary_data_size`` and has no ``data``.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from runtime.events import RawEvent
from runtime.inference.errors import bad_request
from runtime.inference.event import InferenceEvent
from runtime.inference.jsontext import json_data, load_json, object_json, tensor_list_json
from runtime.inference.model import ArrayMaker, InferenceRequest, ModelSpec, RequestedOutput
from runtime.inference.outputs import collect
from runtime.inference.tensors import from_json, from_raw, to_raw
from runtime.responses import BINARY, JSON, RawResponse

HEADER_LENGTH = "Inference-Header-Content-Length"


def _parameters(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"{what}: parameters must be an object")
    return value


def _header_and_binary(raw: RawEvent) -> tuple[Any, memoryview]:
    body = raw.body
    length = raw.headers.get(HEADER_LENGTH)
    if length is None:
        header_bytes, binary = body, memoryview(b"")
    else:
        try:
            size = int(length)
        except ValueError:
            size = -1
        if not 0 <= size <= len(body):
            raise bad_request(f"{HEADER_LENGTH} {length!r} is not a length within the body "
                              f"of {len(body)} bytes")
        view = memoryview(body)
        header_bytes, binary = bytes(view[:size]), view[size:]
    try:
        header = load_json(header_bytes)
    except ValueError as exc:
        raise bad_request(f"the request is not valid JSON: {exc}") from None
    if not isinstance(header, dict):
        raise bad_request("the request must be a JSON object")
    return header, binary


def _binary_input(chunk: memoryview, datatype: str, shape: tuple[int, ...], what: str
                  ) -> np.ndarray:
    return from_raw(datatype, shape, chunk, what)


def _json_input(data: Any, datatype: str, shape: tuple[int, ...], what: str) -> np.ndarray:
    return from_json(datatype, shape, data, what)


def decode(raw: RawEvent, spec: ModelSpec) -> InferenceRequest:
    header, binary = _header_and_binary(raw)
    request_id = header.get("id", "")
    if not isinstance(request_id, str):
        raise bad_request("id must be a string")
    parameters = _parameters(header.get("parameters"), "request")
    request = InferenceRequest(spec.name, spec.version, request_id, parameters,
                               binary_outputs=bool(parameters.get("binary_data_output")))
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise bad_request("inputs must be a non-empty list of tensors")
    offset = 0
    for position, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise bad_request(f"inputs[{position}] must be an object")
        size = _parameters(item.get("parameters"), f"inputs[{position}]").get(
            "binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise bad_request(f"inputs[{position}]: binary_data_size {size!r} runs past "
                                  f"the {len(binary)} bytes of binary data")
            chunk = binary[offset:offset + size]
            offset += size
            array_of: ArrayMaker = functools.partial(_binary_input, chunk)
        elif "data" in item:
            array_of = functools.partial(_json_input, item["data"])
        else:
            raise bad_request(f"inputs[{position}] has neither data nor binary_data_size")
        request.add_input(spec, item.get("name"), item.get("datatype"), item.get("shape"),
                          array_of)
    if offset != len(binary):
        raise bad_request(f"{len(binary) - offset} bytes of binary data belong to no input")
    request.check_complete(spec)
    outputs = header.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise bad_request("outputs must be a list")
        request.outputs = []
        for position, item in enumerate(outputs):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise bad_request(f"outputs[{position}] must be an object with a name")
            binary_flag = _parameters(item.get("parameters"), f"outputs[{position}]").get(
                "binary_data", request.binary_outputs)
            request.outputs.append(RequestedOutput(item["name"], bool(binary_flag)))
    return request


def encode(result: Any, event: InferenceEvent, spec: ModelSpec) -> RawResponse:
    request = event.request
    outputs = collect(result, spec, request.outputs)
    binary_names = ({o.name for o in request.outputs if o.binary} if request.outputs is not None
                    else None)
    head: dict[str, Any] = {"model_name": spec.name, "model_version": spec.version}
    if request.id:
        head["id"] = request.id
    if outputs.parameters:
        head["parameters"] = outputs.parameters
    tensors: list[tuple[dict[str, Any], bytes | None]] = []
    blobs: list[bytes] = []
    for tensor in outputs.tensors:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype,
                                 "shape": list(tensor.array.shape)}
        binary = request.binary_outputs if binary_names is None else tensor.name in binary_names
        if binary:
            blob = to_raw(tensor.array, tensor.datatype)
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
            tensors.append((entry, None))
        else:
            tensors.append((entry, json_data(tensor.array, tensor.datatype)))
    header = object_json(head, "outputs", tensor_list_json(tensors))
    if not blobs:
        return RawResponse(200, {}, header, JSON, event.id)
    return RawResponse(200, {HEADER_LENGTH: str(len(header))}, b"".join([header, *blobs]),
                       BINARY, event.id)
