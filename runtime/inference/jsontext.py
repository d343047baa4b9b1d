"""Tensor requests and responses as JSON text, fast where it is safe.

A 1x3x224x224 FP32 tensor is 150k numbers: through Python lists and the
standard ``json`` module that costs ~90 ms per request each way, with orjson
(parsing) and its numpy serialisation (writing) under 10 ms. Where orjson
would differ from ``json`` (NaN and infinity literals, integers beyond 64 bits,
UTF-16/32 input, ASCII escaping of text) the standard module still does the
work, so the JSON a client or handler sees keeps its values.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson

from runtime.inference.tensors import DTYPES, to_json_data
from runtime.responses import dump_json


def load_json(data: bytes | bytearray | memoryview | str) -> Any:
    """``json.loads``, through orjson when it can (the same values: both keep the
    last of duplicate keys); anything orjson refuses goes to ``json.loads``, which
    accepts it or raises its own error."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)


def json_data(array: np.ndarray, datatype: str) -> bytes:
    """``to_json_data`` as JSON text, straight from the array (no Python list).

    Floats go out as doubles (what ``tolist()`` gives, so a client reading them
    as Python floats sees the same values as before); orjson writes them ~15x
    faster than ``json``. NaN and infinities keep ``json``'s literals (orjson
    would write ``null``), and BYTES keep ``json``'s escaping.
    """
    flat = array.reshape(-1)
    dtype = DTYPES[datatype]
    if dtype is not None:
        if dtype.kind == "f":
            flat = flat.astype("<f8")
            if not np.isfinite(flat).all():
                return json.dumps(flat.tolist(), separators=(",", ":")).encode()
        else:
            flat = np.ascontiguousarray(flat, dtype=dtype)
        return orjson.dumps(flat, option=orjson.OPT_SERIALIZE_NUMPY)
    return json.dumps(to_json_data(array, datatype), separators=(",", ":")).encode()


def tensor_list_json(entries: Sequence[tuple[dict[str, Any], bytes | None]]) -> bytes:
    """A JSON list of tensor objects: each entry's fields (via ``dump_json``), then
    ``"data"`` spliced in as ready-made JSON text (``json_data``) when given."""
    parts = []
    for fields, data in entries:
        text = dump_json(fields)
        parts.append(text if data is None else b"".join(
            (text[:-1], b',"data":' if fields else b'"data":', data, b"}")))
    return b"[" + b",".join(parts) + b"]"


def object_json(head: dict[str, Any], key: str, value: bytes,
                tail: dict[str, Any] | None = None) -> bytes:
    """``dump_json({**head, key: value, **tail})`` with ``value`` ready-made JSON text."""
    text = dump_json(head)
    parts = [text[:-1], b"," if head else b"", dump_json(key), b":", value]
    if tail:
        parts += [b",", dump_json(tail)[1:]]
    else:
        parts.append(b"}")
    return b"".join(parts)
