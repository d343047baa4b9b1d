"""The one interface every function-to-function call goes through.

``call_function`` from a handler, a workflow step and the front door all ask a
``Caller`` to run a named function on a ``RawEvent`` and get a ``RawResponse``
back. Whether the target is hosted in this processor (dispatched to its pool)
or elsewhere (HTTP) is the caller's business, which is what makes fusion a
deployment choice rather than a code change.

Failures are answers, not exceptions, as in Nuclio's ``call_function``: an
unknown function is a 404, a call that times out a 504, a loop a 508.
"""

from __future__ import annotations

import os
import re
from typing import Any, Protocol

from fusion.tracing import next_hop_headers
from runtime.events import RawEvent
from runtime.responses import RawResponse, error_response

# How deep a chain of calls may go before it is a loop (508 Loop Detected).
DEFAULT_MAX_CALL_DEPTH = 16
# Carried on every call: how many calls led to this one (the first request is 0).
CALL_DEPTH_HEADER = "X-Nuclio-Call-Depth"
# Nuclio's platform sets it on calls so a scaled-to-zero target can be woken.
TARGET_HEADER = "X-Nuclio-Target"


class Caller(Protocol):
    """Runs a function by name; never raises for the callee's failures."""

    async def call(self, name: str, event: RawEvent, timeout: float | None) -> RawResponse:
        """The callee's response, or a 404/503/504/508 response saying why there is none."""
        ...


def header(headers: dict[str, Any], name: str) -> str | None:
    """A header's value whatever its case (events keep the sender's spelling)."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return str(value)
    return None


def call_depth(headers: dict[str, Any]) -> int:
    """How many calls led to the request with these headers (0 for an outside request)."""
    raw = header(headers, CALL_DEPTH_HEADER)
    try:
        return max(0, int(raw)) if raw is not None else 0
    except ValueError:
        return 0


def hop_headers(name: str, headers: dict[str, Any]) -> dict[str, Any]:
    """The callee's headers, local or remote alike: a child traceparent, the call depth
    one up, and ``X-Nuclio-Target`` naming the callee (a passed-through request's
    target names whoever it was sent to, not this callee)."""
    skip = (CALL_DEPTH_HEADER.lower(), TARGET_HEADER.lower())
    out = {k: v for k, v in next_hop_headers(headers).items() if k.lower() not in skip}
    out[CALL_DEPTH_HEADER] = str(call_depth(headers) + 1)
    out[TARGET_HEADER] = name
    return out


def loop_detected(name: str, limit: int) -> RawResponse:
    return error_response(508, f"call chain deeper than {limit} calls (calling {name!r}): "
                               "a loop?")


def unknown_function(name: str) -> RawResponse:
    return error_response(404, f"function {name!r} is not known")


def timed_out(name: str, timeout: float | None) -> RawResponse:
    return error_response(504, f"call to {name!r} got no answer within {timeout} s")


_ENV_NAME = re.compile(r"[^A-Z0-9]")


def env_url(name: str) -> str | None:
    """``NUCLIO_FUNCTION_<NAME>_URL`` (name upper-cased, other characters as ``_``)."""
    return os.environ.get(f"NUCLIO_FUNCTION_{_ENV_NAME.sub('_', name.upper())}_URL") or None


def nuclio_default_url(name: str, namespace: str) -> str:
    """Where Nuclio's own ``call_function`` sends a call: the function's service, port 8080."""
    return f"http://nuclio-{namespace}-{name}:8080"
