"""Tensor datatypes and their numpy, JSON and binary forms.

Binary forms are little-endian, row-major; BYTES elements are each prefixed by a
4-byte little-endian length (the protocol's binary tensor data extension and
gRPC raw contents share this layout).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from runtime.inference.errors import bad_request

# Datatype -> little-endian numpy dtype (None: BYTES, held as an object array of bytes).
DTYPES: dict[str, np.dtype[Any] | None] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": None,
}
_BY_KIND_SIZE = {(dt.kind, dt.itemsize): name for name, dt in DTYPES.items() if dt is not None}


def check_datatype(datatype: Any, what: str) -> str:
    if datatype not in DTYPES:
        raise bad_request(f"{what}: unknown datatype {datatype!r}; expected one of "
                          f"{', '.join(DTYPES)}")
    return str(datatype)


def check_shape(shape: Any, what: str) -> tuple[int, ...]:
    if type(shape) is list or type(shape) is tuple:  # the usual case, checked without a genexpr
        for d in shape:
            if type(d) is not int or d < 0:
                break
        else:
            return tuple(shape)
    if not isinstance(shape, list | tuple) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise bad_request(f"{what}: shape must be a list of non-negative integers, "
                          f"got {shape!r}")
    return tuple(shape)


def element_count(shape: Sequence[int]) -> int:
    return math.prod(shape)


def datatype_of(array: np.ndarray) -> str:
    """The protocol's name for an array's dtype (object, bytes and str arrays are BYTES)."""
    kind = array.dtype.kind
    if kind in "OSU":
        return "BYTES"
    name = _BY_KIND_SIZE.get((kind, array.dtype.itemsize))
    if name is None:
        raise ValueError(f"numpy dtype {array.dtype} has no Open Inference datatype")
    return name


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, bytearray | memoryview | np.bytes_):
        return bytes(item)
    return str(item).encode()


def bytes_array(items: Sequence[Any], shape: Sequence[int]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = [_as_bytes(x) for x in items]
    return array.reshape(shape)


def from_json(datatype: str, shape: tuple[int, ...], data: Any, what: str) -> np.ndarray:
    """A tensor from JSON ``data`` (flat or nested, row-major)."""
    count = element_count(shape)
    dtype = DTYPES[datatype]
    if dtype is None:
        flat = _flatten(data) if isinstance(data, list) else [data]
        if len(flat) != count:
            raise bad_request(f"{what}: shape {list(shape)} needs {count} elements, "
                              f"got {len(flat)}")
        return bytes_array(flat, shape)
    try:
        array = np.array(data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise bad_request(f"{what}: data does not fit datatype {datatype}: {exc}") from None
    if array.size != count:
        raise bad_request(f"{what}: shape {list(shape)} needs {count} elements, "
                          f"got {array.size}")
    return array.reshape(shape)


def _flatten(data: list[Any]) -> list[Any]:
    if not any(isinstance(x, list) for x in data):
        return data
    out: list[Any] = []
    for x in data:
        out.extend(_flatten(x) if isinstance(x, list) else [x])
    return out


def from_raw(datatype: str, shape: tuple[int, ...], raw: bytes | memoryview, what: str
             ) -> np.ndarray:
    """A tensor from its binary form, without copying numeric data (the array is
    read-only: copy it before changing it in place)."""
    count = element_count(shape)
    dtype = DTYPES[datatype]
    if dtype is None:
        return bytes_array(_split_bytes(raw, count, what), shape)
    if len(raw) != count * dtype.itemsize:
        raise bad_request(f"{what}: shape {list(shape)} of {datatype} needs "
                          f"{count * dtype.itemsize} bytes, got {len(raw)}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _split_bytes(raw: bytes | memoryview, count: int, what: str) -> list[bytes]:
    view = memoryview(raw)
    items: list[bytes] = []
    offset, end = 0, len(view)
    while offset < end:
        if offset + 4 > end:
            raise bad_request(f"{what}: truncated BYTES element length")
        size = int.from_bytes(view[offset:offset + 4], "little")
        offset += 4
        if offset + size > end:
            raise bad_request(f"{what}: BYTES element runs past the end of the data")
        items.append(bytes(view[offset:offset + size]))
        offset += size
    if len(items) != count:
        raise bad_request(f"{what}: shape needs {count} BYTES elements, got {len(items)}")
    return items


def to_raw(array: np.ndarray, datatype: str) -> bytes:
    dtype = DTYPES[datatype]
    if dtype is None:
        parts = []
        for item in array.reshape(-1):
            data = _as_bytes(item)
            parts.append(len(data).to_bytes(4, "little"))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def to_json_data(array: np.ndarray, datatype: str) -> list[Any]:
    flat = array.reshape(-1)
    if datatype == "BYTES":
        return [_as_bytes(x).decode("utf-8", "replace") for x in flat]
    result: list[Any] = flat.tolist()
    return result


def as_array(value: Any, datatype: str | None, what: str) -> tuple[np.ndarray, str]:
    """A handler's output value (array, list, scalar) as an array and its datatype;
    ``datatype`` (from the output or its declaration) wins over the value's own type."""
    try:
        if datatype is not None:
            check_datatype(datatype, what)
            dtype = DTYPES[datatype]
            if dtype is None:
                flat = np.asarray(value, dtype=object)
                return bytes_array(list(flat.reshape(-1)), flat.shape), datatype
            return np.asarray(value, dtype=dtype), datatype
        array = np.asarray(value)
        return array, datatype_of(array)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"{what}: {exc}") from None
