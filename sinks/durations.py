"""The duration type of sink and trigger attributes: a Go duration ("500ms", "5s", as
Nuclio writes them) or a number of seconds."""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator

from processor.config import parse_go_duration

Duration = Annotated[float, BeforeValidator(parse_go_duration)]
