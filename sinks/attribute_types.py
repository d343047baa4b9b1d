"""Attribute types shared by sinks and frame triggers."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from processor.config import parse_go_duration


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("expected a path starting with '/', such as '/stream'")
    return value


# A Go duration ("500ms", "5s", as Nuclio writes them) or a number of seconds.
Duration = Annotated[float, BeforeValidator(parse_go_duration)]
# The URL path a sink serves its stream on.
StreamPath = Annotated[str, AfterValidator(_absolute_path)]
