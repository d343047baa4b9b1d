"""What a call is, and what every queue backend must do with it.

The dispatcher, the callback sender and the HTTP routes only talk to
``CallStore``; the SQLite and JetStream backends implement it. Every method is
keyed by call id and the function's name, so one store serves a queue per
function (the multi-function front door shares the processor's one store).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

State = Literal["queued", "running", "retrying", "succeeded", "failed", "dead", "cancelled"]
FINAL_STATES = ("succeeded", "failed", "dead", "cancelled")
CallbackState = Literal["none", "pending", "delivered", "failed"]


class StoreUnavailable(Exception):
    """The backend cannot take or answer now (disk full, broker down): HTTP 503."""


@dataclass
class Call:
    """One accepted call: the request as sent, and what became of it."""

    id: str
    function: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    content_type: str
    callback_url: str | None
    accepted_ns: int
    digest: str = ""  # of method, path, query and body: idempotency checks
    state: State = "queued"
    attempts: int = 0
    max_attempts: int = 1
    cancel_requested: bool = False
    started_at: float | None = None
    finished_at: float | None = None
    due_at: float = 0.0
    status: int | None = None
    duration: float | None = None
    resp_headers: dict[str, str] = field(default_factory=dict)
    resp_body: bytes | None = None
    resp_content_type: str | None = None
    resp_dropped: bool = False
    callback_state: CallbackState = "none"
    callback_attempts: int = 0
    callback_last_status: int | None = None
    callback_due_at: float = 0.0

    def compute_digest(self) -> str:
        h = hashlib.sha256()
        h.update(json.dumps([self.method, self.path, sorted(self.query.items())]).encode())
        h.update(b"\0")
        h.update(self.body)
        return h.hexdigest()

    def public(self) -> dict[str, Any]:
        """The status lookup's JSON (the stored response only once the call is final)."""
        out: dict[str, Any] = {
            "call_id": self.id, "function": self.function, "state": self.state,
            "attempts": self.attempts, "max_attempts": self.max_attempts,
            "accepted_at": self.accepted_ns / 1e9, "started_at": self.started_at,
            "finished_at": self.finished_at, "status": self.status,
            "callback": {"url_set": self.callback_url is not None,
                         "state": self.callback_state, "attempts": self.callback_attempts,
                         "last_status": self.callback_last_status},
        }
        if self.state == "retrying":
            out["next_attempt_at"] = self.due_at
        if self.state in FINAL_STATES and self.status is not None:
            body = self.resp_body or b""
            try:
                text: str | None = body.decode()
                encoding = "utf-8"
            except UnicodeDecodeError:
                import base64
                text, encoding = base64.b64encode(body).decode(), "base64"
            out["response"] = {"status": self.status, "headers": self.resp_headers,
                               "content_type": self.resp_content_type,
                               "body": None if self.resp_dropped else text,
                               "body_encoding": encoding, "body_dropped": self.resp_dropped}
        return out


@dataclass(frozen=True)
class Outcome:
    """What one attempt produced (the store records it with the call's new state)."""

    status: int
    headers: dict[str, str]
    body: bytes
    content_type: str
    duration: float


Accepted = Literal["new", "duplicate", "conflict", "full"]


class CallStore(Protocol):
    """A durable queue of calls per function, plus their status and results."""

    backend: str

    def status(self) -> dict[str, Any]:
        """For ``/ready``: ``{"backend", "state": ok|unavailable, "reason"?, ...}``."""
        ...

    @property
    def available(self) -> bool: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def accept(self, call: Call, max_queued: int) -> tuple[Accepted, Call]:
        """Stores ``call`` durably before returning ``"new"``; ``"duplicate"`` (the
        stored call) when its id is known with the same digest, ``"conflict"`` when
        the digest differs, ``"full"`` when the function's queue holds ``max_queued``."""
        ...

    async def claim(self, function: str, limit: int) -> tuple[list[Call], float | None]:
        """Up to ``limit`` due calls, durably marked running with one more attempt;
        and the seconds until the next one is due (None: nothing waits)."""
        ...

    async def heartbeat(self, call: Call) -> None:
        """The call is still running (JetStream: ``in_progress``)."""
        ...

    async def record(self, call: Call, outcome: Outcome, state: State, due_in: float
                     ) -> None:
        """Stores an attempt's result: ``retrying`` again in ``due_in`` seconds, or a
        final state (with a pending callback when the call has a callback URL)."""
        ...

    async def get(self, call_id: str) -> Call | None: ...

    async def cancel(self, call_id: str) -> Call | None:
        """Cancels a queued/retrying call; a running one gets no retry. None: unknown."""
        ...

    async def dead_letters(self, function: str, limit: int) -> list[Call]: ...

    async def requeue(self, call_id: str, max_attempts: int) -> Call | None:
        """A dead (or failed) call queued again with a fresh attempt budget."""
        ...

    async def depth(self, function: str) -> int: ...

    async def callbacks_due(self, limit: int) -> tuple[list[Call], float | None]:
        """Final calls whose callback is pending and due, and seconds to the next."""
        ...

    async def callback_result(self, call: Call, state: CallbackState, last_status: int | None,
                              due_in: float) -> None: ...


def now() -> float:
    return time.time()
