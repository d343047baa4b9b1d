"""Tensor conversions of the Open Inference codec (runtime.inference)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.events import RawEvent
from runtime.inference import rest
from runtime.inference.errors import InferenceError
from runtime.inference.event import InferenceEvent
from runtime.inference.model import ModelSpec, TensorSpec
from runtime.inference.outputs import collect
from runtime.inference.tensors import DTYPES, datatype_of, from_json, from_raw, to_json_data, to_raw

SPEC = ModelSpec("m", "1")


@pytest.mark.parametrize("datatype", [d for d in DTYPES if d != "BYTES"])
def test_numeric_round_trip_through_binary_and_json(datatype: str) -> None:
    dtype = DTYPES[datatype]
    assert dtype is not None
    array = (np.arange(6) % 2).astype(dtype).reshape(2, 3)
    raw = to_raw(array, datatype)
    assert len(raw) == 6 * dtype.itemsize
    np.testing.assert_array_equal(from_raw(datatype, (2, 3), raw, "t"), array)
    np.testing.assert_array_equal(from_json(datatype, (2, 3), to_json_data(array, datatype),
                                            "t"), array)
    assert datatype_of(array) == datatype


def test_bytes_framing() -> None:
    array = np.array([b"a", b"", "é".encode()], dtype=object)
    raw = to_raw(array, "BYTES")
    assert raw == b"\x01\x00\x00\x00a\x00\x00\x00\x00\x02\x00\x00\x00\xc3\xa9"
    assert from_raw("BYTES", (3,), raw, "t").tolist() == [b"a", b"", "é".encode()]
    with pytest.raises(InferenceError, match="truncated"):
        from_raw("BYTES", (4,), raw + b"\x01\x00", "t")
    with pytest.raises(InferenceError, match="runs past"):
        from_raw("BYTES", (1,), b"\x09\x00\x00\x00abc", "t")
    with pytest.raises(InferenceError, match="needs 2 BYTES elements, got 3"):
        from_raw("BYTES", (2,), raw, "t")


def test_json_data_may_be_nested_and_is_checked() -> None:
    assert from_json("INT32", (2, 2), [[1, 2], [3, 4]], "t").tolist() == [[1, 2], [3, 4]]
    assert from_json("BYTES", (1, 2), [["x", "y"]], "t").tolist() == [[b"x", b"y"]]
    with pytest.raises(InferenceError, match="needs 4 elements, got 3"):
        from_json("FP32", (2, 2), [1, 2, 3], "t")
    with pytest.raises(InferenceError, match="does not fit datatype UINT8"):
        from_json("UINT8", (1,), [300], "t")
    with pytest.raises(InferenceError, match="does not fit datatype FP32"):
        from_json("FP32", (1,), ["x"], "t")


def _raw(body: bytes, headers: dict[str, str] | None = None) -> RawEvent:
    return RawEvent("id", body, "", headers or {}, {}, "POST", "", "", 0.0, "openinference",
                    "t", None, None, ("openinference-rest", SPEC))


def test_rest_binary_request_and_response() -> None:
    header = json.dumps({"id": "r", "inputs": [
        {"name": "a", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
        {"name": "b", "datatype": "INT8", "shape": [1], "data": [5]}],
        "outputs": [{"name": "b2", "parameters": {"binary_data": True}}, {"name": "a2"}],
    }).encode()
    body = header + np.array([1.5, 2.5], dtype="<f4").tobytes()
    raw = _raw(body, {rest.HEADER_LENGTH: str(len(header))})
    request = rest.decode(raw, SPEC)
    assert request.inputs["a"].tolist() == [1.5, 2.5] and request.inputs["b"].tolist() == [5]
    event = InferenceEvent(raw, request)
    assert json.loads(event.body)["inputs"][0]["data"] == [1.5, 2.5]
    response = rest.encode({"a2": request.inputs["a"] * 2, "b2": request.inputs["b"] + 1},
                           event, SPEC)
    size = int(response.headers[rest.HEADER_LENGTH])
    doc = json.loads(response.body[:size])
    assert doc["id"] == "r" and [o["name"] for o in doc["outputs"]] == ["b2", "a2"]
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": 1}
    assert doc["outputs"][1]["data"] == [3.0, 5.0]
    assert response.body[size:] == b"\x06"


def test_declared_outputs_set_the_datatype_and_errors_are_500() -> None:
    spec = ModelSpec("m", "1", (), (TensorSpec("y", "FP16", (-1,)),))
    outputs = collect({"y": [1, 2]}, spec, None)
    assert outputs.tensors[0].datatype == "FP16" and outputs.tensors[0].array.dtype == np.float16
    with pytest.raises(InferenceError) as info:
        collect({"y": ["a"]}, spec, None)
    assert info.value.status_code == 500
    with pytest.raises(InferenceError) as info:
        collect("text", spec, None)
    assert info.value.status_code == 500
