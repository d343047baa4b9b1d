"""Attribute types shared by sinks and frame triggers."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator

from core.config import parse_go_duration


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("expected a path starting with '/', such as '/stream'")
    return value


# A Go duration ("500ms", "5s", as Nuclio writes them) or a number of seconds.
Duration = Annotated[float, BeforeValidator(parse_go_duration)]
# The URL path a sink serves its stream on.
StreamPath = Annotated[str, AfterValidator(_absolute_path)]


def checked_url(value: str, schemes: tuple[str, ...], expected: str) -> str:
    """``value`` stripped, if it is an absolute URL with one of ``schemes``; else
    ValueError(``expected``)."""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(expected)
    return value


def check_delays(first: float, cap: float, first_name: str, cap_name: str) -> None:
    """A back-off's cap must not be below its first delay."""
    if cap < first:
        raise ValueError(f"expected {cap_name} >= {first_name}")
