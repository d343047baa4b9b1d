"""W3C Trace Context across calls: the trace id is kept, each hop gets a span id.

Only ``traceparent`` (version 00) is read and written; ``tracestate`` is passed
on untouched, as the recommendation asks of a participant that adds nothing.
"""

from __future__ import annotations

import os
import re

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

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


def _hex(nbytes: int) -> str:
    return os.urandom(nbytes).hex()


def child(value: str | None) -> str:
    """The traceparent for the next hop: same trace (a new one when there is none or it
    is invalid), a new span id, the sampled flag kept."""
    parsed = parse(value)
    if parsed is None:
        return f"00-{_hex(16)}-{_hex(8)}-01"
    trace_id, _, flags = parsed
    return f"00-{trace_id}-{_hex(8)}-{flags}"


def trace_id(value: str | None) -> str | None:
    """The trace id of a traceparent, for log lines."""
    parsed = parse(value)
    return parsed[0] if parsed else None


def next_hop_headers(headers: dict[str, str]) -> dict[str, str]:
    """A copy of request headers for the next call: a child traceparent (any spelling of
    the old one replaced), tracestate kept."""
    out = {k: v for k, v in headers.items() if k.lower() != TRACEPARENT}
    old = next((v for k, v in headers.items() if k.lower() == TRACEPARENT), None)
    out[TRACEPARENT] = child(old)
    return out
