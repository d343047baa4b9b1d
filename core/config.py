"""Config values and errors shared by every layer that reads configuration.

A ``ConfigError`` names the YAML path and what was expected; the CLI turns it
into exit status 2 before anything listens. Go durations, listen addresses and
pydantic validation messages are parsed the same way for function.yaml,
platform.yaml, trigger and sink attributes, so they live here, below triggers
and sinks.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ValidationError

M = TypeVar("M", bound=BaseModel)

DEFAULT_HTTP_PORT = 8080


class ConfigError(Exception):
    """A configuration problem, reported before anything starts listening."""


# -- Go durations ----------------------------------------------------------------
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0,
                 "h": 3600.0}


def parse_go_duration(value: Any) -> float:
    """``"1m30s"`` -> 90.0. Bare numbers are seconds. Negative durations are refused."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30s' or '500ms', got a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("expected a non-negative duration")
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a duration such as '30s' or '500ms', got {value!r}")
    text = value.strip()
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if not match:
            raise ValueError(f"expected a Go duration such as '30s', '1m30s' or '500ms', "
                             f"got {value!r}")
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text:
        raise ValueError("expected a duration such as '30s', got an empty string")
    return total


Duration = Annotated[float, BeforeValidator(parse_go_duration)]


@dataclass(frozen=True)
class Address:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_address(value: str, yaml_path: str, default_host: str = "0.0.0.0") -> Address:
    """``":8080"``, ``"8080"``, ``"host:8080"`` or ``"[::1]:8080"`` -> Address."""
    text = str(value).strip()
    for prefix in ("http://", "tcp://"):
        if text.startswith(prefix):
            text = text[len(prefix):]
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{yaml_path}: expected a listen address such as ':8080' or "
                          f"'127.0.0.1:8080', got {value!r}")
    return Address(host, int(port))


def _format_loc(prefix: str, loc: tuple[Any, ...]) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("function-after", "function-before", "function-plain"):
            continue
        else:
            path = f"{path}.{part}" if path else str(part)
    return path


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
        where = _format_loc(prefix, loc) or "(top level)"
        message = err["msg"]
        if err["type"] == "missing":
            message = "is required but missing"
        elif "input" in err and err["type"] not in ("missing",):
            got = err["input"]
            shown = repr(got) if not isinstance(got, dict) else "a mapping"
            message = f"{message} (got {shown})"
        lines.append(f"{where}: {message}")
    return "; ".join(lines)


def validate_model(model: type[M], data: Any, yaml_path: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, yaml_path)) from None


def unknown_keys(model: type[BaseModel], data: dict[str, Any]) -> list[str]:
    """Warnings for keys the model does not know, with a suggestion for likely typos."""
    known = set(model.model_fields)
    for field in model.model_fields.values():
        if field.alias:
            known.add(field.alias)
    warnings = []
    for key in data:
        if key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        warnings.append(f"unknown attribute {key!r}{hint}")
    return warnings
