"""W3C Trace Context across calls: the trace id is kept, each hop gets a span id.

Only ``traceparent`` (version 00) is read and written; ``tracestate`` is passed
on untouched, as the recommendation asks of a participant that adds nothing.
"""

from __future__ import annotations

import os

from runtime.tracing import TRACEPARENT, parse, traceparent_of

TRACESTATE = "tracestate"


def _hex(nbytes: int) -> str:
    return os.urandom(nbytes).hex()


def child(value: str | None) -> str:
    """The traceparent for the next hop: same trace (a new one when there is none or it
    is invalid), a new span id, the sampled flag kept."""
    parsed = parse(value)
    if parsed is None:
        return f"00-{_hex(16)}-{_hex(8)}-01"
    trace, _, flags = parsed
    return f"00-{trace}-{_hex(8)}-{flags}"


def next_hop_headers(headers: dict[str, str]) -> dict[str, str]:
    """A copy of request headers for the next call: a child traceparent (any spelling of
    the old one replaced), tracestate kept."""
    out = {k: v for k, v in headers.items() if k.lower() != TRACEPARENT}
    out[TRACEPARENT] = child(traceparent_of(headers))
    return out


__all__ = ["TRACEPARENT", "TRACESTATE", "child", "next_hop_headers", "parse"]
