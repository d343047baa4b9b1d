"""A handler's result as output tensors.

Accepted results (the README documents them):
- ``{"outputs": [{"name", "datatype"?, "shape"?, "data"}, ...]}`` (the protocol's
  JSON response; ``data`` may be a list or an array), as a dict or as the JSON
  body of a ``context.Response`` with status 200;
- ``{"outputs": {name: array, ...}}`` or simply ``{name: array, ...}``;
- a single array (named after the first declared output, else ``output0``).
A ``context.Response`` with another status, or a dict with only ``"error"``, is
the handler's error and reaches the client in the protocol's error form.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, NamedTuple

import nuclio_sdk
import numpy as np

from runtime.inference.errors import InferenceError
from runtime.inference.jsontext import load_json
from runtime.inference.model import ModelSpec, RequestedOutput, checker
from runtime.inference.tensors import as_array, check_shape, element_count


class OutputTensor(NamedTuple):
    name: str
    datatype: str
    array: np.ndarray


class Outputs(NamedTuple):
    tensors: list[OutputTensor]
    parameters: dict[str, Any]


def _fault(message: str) -> InferenceError:
    return InferenceError(500, f"the function returned {message}")


def _from_response(response: nuclio_sdk.Response) -> Any:
    body = response.body
    if int(response.status_code) != 200:
        raise InferenceError(int(response.status_code), _error_text(body))
    if isinstance(body, bytes | bytearray | str):
        try:
            return load_json(body)
        except ValueError:
            raise _fault("a response body that is not JSON") from None
    return body


def _error_text(body: Any) -> str:
    if isinstance(body, bytes | bytearray):
        body = bytes(body).decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            parsed = json.loads(body)
        except ValueError:
            return body or "the function failed"
        body = parsed
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return json.dumps(body) if body is not None else "the function failed"


def collect(result: Any, spec: ModelSpec, requested: list[RequestedOutput] | None
            ) -> Outputs:
    if isinstance(result, nuclio_sdk.Response):
        result = _from_response(result)
    parameters: dict[str, Any] = {}
    declared = checker(spec).output_types
    if isinstance(result, np.ndarray):
        name = spec.outputs[0].name if spec.outputs else "output0"
        items: list[tuple[str, Any, str | None, Any]] = [(name, result, None, None)]
    elif type(result) is dict or isinstance(result, Mapping):
        if "outputs" in result:
            outputs = result["outputs"]
            if isinstance(result.get("parameters"), dict):
                parameters = result["parameters"]
        elif len(result) == 1 and "error" in result:
            raise InferenceError(500, str(result["error"]))
        else:
            outputs = result
        items = _items(outputs)
    else:
        raise _fault(f"a {type(result).__name__}; expected output tensors (a dict or arrays)")
    tensors = [_tensor(name, value, datatype or declared.get(name), shape)
               for name, value, datatype, shape in items]
    return Outputs(_select(tensors, requested), parameters)


def _items(outputs: Any) -> list[tuple[str, Any, str | None, Any]]:
    if type(outputs) is dict or isinstance(outputs, Mapping):
        return [(str(name), value, None, None) for name, value in outputs.items()]
    if isinstance(outputs, list):
        items = []
        for position, item in enumerate(outputs):
            if not isinstance(item, Mapping) or "name" not in item or "data" not in item:
                raise _fault(f"outputs[{position}] without a name and data")
            items.append((str(item["name"]), item["data"], item.get("datatype"),
                          item.get("shape")))
        return items
    raise _fault("'outputs' that is neither a list nor a dict")


def _tensor(name: str, value: Any, datatype: str | None, shape: Any) -> OutputTensor:
    what = f"output {name!r}"
    try:
        array, datatype = as_array(value, datatype, what)
    except (ValueError, InferenceError) as exc:
        raise _fault(f"an unusable tensor: {exc}") from None
    if shape is not None:
        try:
            dims = check_shape(shape, what)
        except InferenceError as exc:
            raise _fault(str(exc)) from None
        if element_count(dims) != array.size:
            raise _fault(f"{what} with shape {list(dims)} but {array.size} elements")
        array = array.reshape(dims)
    return OutputTensor(name, datatype, array)


def _select(tensors: list[OutputTensor], requested: list[RequestedOutput] | None
            ) -> list[OutputTensor]:
    if requested is None:
        return tensors
    by_name = {t.name: t for t in tensors}
    selected = []
    for output in requested:
        tensor = by_name.get(output.name)
        if tensor is None:
            raise InferenceError(400, f"unknown output {output.name!r}; the model produced "
                                      f"{', '.join(map(repr, by_name)) or 'none'}")
        selected.append(tensor)
    return selected
