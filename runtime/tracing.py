"""Reading W3C Trace Context (``traceparent``, version 00): the trace an event belongs to.

Below everything that needs it: the logger puts the trace id in each line written while
an event is handled, and ``fusion.tracing`` makes the next hop's header from it.
"""

from __future__ import annotations

import re
from typing import Any

TRACEPARENT = "traceparent"

_PARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def parse(value: str | None) -> tuple[str, str, str] | None:
    """(trace id, parent span id, flags) of a valid traceparent, else None."""
    if not value:
        return None
    found = _PARENT.match(value.strip().lower())
    if found is None or found.group(1) == "ff":
        return None
    _, trace_id, span_id, flags = found.groups()
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return trace_id, span_id, flags


def traceparent_of(headers: dict[str, Any]) -> str | None:
    """The ``traceparent`` header in any spelling (events keep the sender's)."""
    value = headers.get(TRACEPARENT)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == TRACEPARENT), None)
    return None if value is None else str(value)


def trace_id(value: str | None) -> str | None:
    """The trace id of a traceparent, for log lines."""
    parsed = parse(value)
    return parsed[0] if parsed else None
