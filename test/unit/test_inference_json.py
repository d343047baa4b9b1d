"""The fast JSON forms of tensors (runtime.inference.jsontext) give the values the
standard ``json`` module gives, including where orjson alone would not."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.inference.jsontext import (
    json_data,
    load_json,
    object_json,
    tensor_list_json,
)
from runtime.inference.tensors import DTYPES, to_json_data
from runtime.responses import dump_json

NUMERIC = [name for name, dtype in DTYPES.items() if dtype is not None]


@pytest.mark.parametrize("datatype", NUMERIC)
def test_numeric_data_reads_back_as_tolist_gives_it(datatype: str) -> None:
    rng = np.random.default_rng(7)
    dtype = DTYPES[datatype]
    assert dtype is not None
    if dtype.kind == "f":
        top = 3 if dtype.itemsize == 2 else 16  # FP16 ends at 65504
        values = rng.standard_normal(500) * 10.0 ** rng.integers(-8, top, 500)
        array = np.concatenate([values, [0.0, -0.0, 10.0 ** top, 1e-7, 0.1]]).astype(dtype)
    elif dtype.kind == "b":
        array = rng.integers(0, 2, 50).astype(bool)
    else:
        info = np.iinfo(dtype)
        array = np.array([info.min, info.max, 0, 1], dtype=dtype)
    array = array.reshape(1, -1)
    text = json_data(array, datatype)
    assert json.loads(text) == to_json_data(array, datatype)
    assert text == json.dumps(to_json_data(array, datatype), separators=(",", ":")).encode() \
        or dtype.kind == "f"  # floats: same values, exponents may be spelled differently


def test_non_finite_floats_keep_json_literals() -> None:
    array = np.array([1.5, np.nan, np.inf, -np.inf], dtype=np.float32)
    assert json_data(array, "FP32") == b"[1.5,NaN,Infinity,-Infinity]"


def test_bytes_and_non_contiguous_and_big_endian_arrays() -> None:
    items = np.array([b"a", "\u00e9".encode()], dtype=object)
    assert json_data(items, "BYTES") == json.dumps(["a", "\u00e9"], separators=(",", ":")).encode()
    strided = np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2]
    assert json.loads(json_data(strided, "INT32")) == strided.reshape(-1).tolist()
    big = np.array([1.25, 2.5], dtype=">f4")
    assert json.loads(json_data(big, "FP32")) == [1.25, 2.5]


def test_spliced_documents_equal_dump_json_of_the_whole() -> None:
    array = np.array([[1.5, 2.5]], dtype=np.float32)
    fields = {"name": "x", "datatype": "FP32", "shape": [1, 2]}
    listed = tensor_list_json([(fields, json_data(array, "FP32")), ({"name": "y"}, None)])
    whole = [{**fields, "data": [1.5, 2.5]}, {"name": "y"}]
    assert listed == dump_json(whole)
    head = {"id": "\u00e9", "model_name": "m"}
    assert object_json(head, "inputs", listed, {"outputs": [{"name": "o"}]}) == dump_json(
        {**head, "inputs": whole, "outputs": [{"name": "o"}]})
    assert object_json({}, "outputs", b"[]") == b'{"outputs":[]}'


def test_load_json_falls_back_to_the_standard_module() -> None:
    assert load_json(b'{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    assert load_json(memoryview(b"[1]")) == [1]
    nan = load_json(b"[NaN, 123456789012345678901234567890]")  # orjson refuses both
    assert np.isnan(nan[0]) and nan[1] == 123456789012345678901234567890
    assert load_json('{"k": 1}'.encode("utf-16")) == {"k": 1}
    with pytest.raises(json.JSONDecodeError):
        load_json(b"{not json")
