"""What the trigger declares about its model, and a decoded request.

``ModelSpec`` travels with every event (a few hundred bytes pickled), so a
worker needs no configuration of its own; ``checker`` builds the lookup tables
once per spec.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from runtime.inference.errors import InferenceError, bad_request
from runtime.inference.tensors import check_datatype, check_shape

# Decodes one input's data once its header is checked: (datatype, shape, what) -> array.
ArrayMaker = Callable[[str, tuple[int, ...], str], np.ndarray]


class TensorSpec(NamedTuple):
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: any size in that dimension


class ModelSpec(NamedTuple):
    name: str
    version: str
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()


def spec_to_wire(spec: ModelSpec) -> tuple[Any, ...]:
    """``spec`` as plain nested tuples: the form it travels in with every event (a
    NamedTuple pickles through Python-level hooks: ~14 us per event, plain ~3 us)."""
    return (spec.name, spec.version, tuple(map(tuple, spec.inputs)),
            tuple(map(tuple, spec.outputs)))


@functools.lru_cache(maxsize=16)
def spec_from_wire(wire: Any) -> ModelSpec:
    """The ``ModelSpec`` of ``spec_to_wire``'s form (a ModelSpec is returned as is)."""
    if isinstance(wire, ModelSpec):
        return wire
    name, version, inputs, outputs = wire
    return ModelSpec(name, version, tuple(TensorSpec(*t) for t in inputs),
                     tuple(TensorSpec(*t) for t in outputs))


@dataclass
class RequestedOutput:
    name: str
    binary: bool = False


@dataclass
class InferenceRequest:
    model_name: str
    model_version: str
    id: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    datatypes: dict[str, str] = field(default_factory=dict)
    # None: every output the handler returns
    outputs: list[RequestedOutput] | None = None
    # REST: send outputs not named in ``outputs`` in binary form (binary_data_output)
    binary_outputs: bool = False

    def add_input(self, spec: ModelSpec, name: Any, datatype: Any, shape: Any,
                  array_of: ArrayMaker) -> None:
        """Checks one input against the declared ones, then decodes it with
        ``array_of(datatype, shape, what)`` (only once its header is known to be valid)."""
        what = f"input {name!r}"
        if not isinstance(name, str) or not name:
            raise bad_request(f"every input needs a non-empty name, got {name!r}")
        if name in self.inputs:
            raise bad_request(f"{what} appears twice")
        datatype = check_datatype(datatype, what)
        dims = check_shape(shape, what)
        checker(spec).input(name, datatype, dims)
        self.inputs[name] = array_of(datatype, dims, what)
        self.datatypes[name] = datatype

    def check_complete(self, spec: ModelSpec) -> None:
        checker(spec).all_inputs(list(self.inputs))


class _Checker:
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.inputs = {t.name: t for t in spec.inputs}
        self.output_types = {t.name: t.datatype for t in spec.outputs}

    def model(self, name: str, version: str) -> None:
        spec = self.spec
        if name != spec.name:
            raise InferenceError(404, f"unknown model {name!r}; this server serves "
                                      f"{spec.name!r}")
        if version and version != spec.version:
            raise InferenceError(404, f"model {name!r} has no version {version!r}; "
                                      f"available: {spec.version!r}")

    def input(self, name: str, datatype: str, shape: Sequence[int]) -> None:
        if not self.inputs:
            return
        declared = self.inputs.get(name)
        if declared is None:
            raise bad_request(f"unexpected input {name!r} for model {self.spec.name!r}; "
                              f"expected {', '.join(map(repr, self.inputs))}")
        if datatype != declared.datatype:
            raise bad_request(f"input {name!r}: datatype {datatype} does not match the "
                              f"model's {declared.datatype}")
        if len(shape) != len(declared.shape) or any(
                d != want and want != -1 for d, want in zip(shape, declared.shape, strict=True)):
            raise bad_request(f"input {name!r}: shape {list(shape)} does not match the "
                              f"model's {list(declared.shape)}")

    def all_inputs(self, names: Sequence[str]) -> None:
        missing = [n for n in self.inputs if n not in names]
        if missing:
            raise bad_request(f"missing input(s) {', '.join(map(repr, missing))} for model "
                              f"{self.spec.name!r}")


@functools.lru_cache(maxsize=16)
def checker(spec: ModelSpec) -> _Checker:
    return _Checker(spec)


def metadata(spec: ModelSpec, platform: str) -> dict[str, Any]:
    """The model metadata document (REST form; gRPC builds its message from the same)."""
    def tensors(items: tuple[TensorSpec, ...]) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)} for t in items]

    return {"name": spec.name, "versions": [spec.version], "platform": platform,
            "inputs": tensors(spec.inputs), "outputs": tensors(spec.outputs)}
