"""Running a workflow: each step's output is the next step's input; a failure stops it.

Unlike OpenFaaS's workflow template, which feeds an error body to the next
step as if it were data, a non-2xx step (or an unreachable one: 502, 504)
ends the chain: the client gets that step's status and body and
``X-Workflow-Failed-Step`` saying which step it was, and later steps are not
called. Where each step runs (in this processor or another) is the
``Caller``'s business, so the same workflow runs fused or apart.

Per-step durations go three ways: one log line per step, ``observe_step``
(the processor's histogram), and a ``Server-Timing`` header so that a client
or a browser's network panel sees where the time went without any tooling.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from urllib.parse import parse_qsl

from fusion.calls import Caller
from fusion.workflow_config import WorkflowSpec, WorkflowStep
from runtime.events import RawEvent, new_event_id
from runtime.logger import Logger
from runtime.responses import RawResponse, error_response

FAILED_STEP_HEADER = "X-Workflow-Failed-Step"
SERVER_TIMING_HEADER = "Server-Timing"

# Server-Timing metric names are tokens (RFC 9110 5.6.2 tchar); anything else becomes "_".
_NOT_TCHAR = re.compile(r"[^A-Za-z0-9!#$%&'*+\-.^_`|~]")
# Headers that describe the client's request body, not the body a step is sent.
_BODY_HEADERS = frozenset({"content-type", "content-length", "transfer-encoding",
                           "content-encoding", "content-md5", "digest"})


def timing_token(name: str) -> str:
    """A step name as a Server-Timing metric name."""
    return _NOT_TCHAR.sub("_", name) or "step"


def server_timing(timings: list[tuple[str, float]]) -> str:
    """``a;dur=1.234, b;dur=5.678`` (milliseconds) for (step name, seconds) pairs."""
    return ", ".join(f"{timing_token(name)};dur={seconds * 1000:.3f}"
                     for name, seconds in timings)


def _with(headers: dict[str, str], name: str, value: str) -> dict[str, str]:
    """``headers`` with ``name`` set, replacing any spelling of it a step sent (a remote
    step's headers keep the sender's case; a nested workflow sends these very names)."""
    lowered = name.lower()
    return {**{k: v for k, v in headers.items() if k.lower() != lowered}, name: value}


def _is_success(status: int) -> bool:
    return 200 <= status < 300


def _split_path(path: str) -> tuple[str, dict[str, str]]:
    """A step's ``path`` may carry a query; events keep it apart, in ``fields``."""
    bare, _, query = path.partition("?")
    return bare or "/", dict(parse_qsl(query, keep_blank_values=True))


class Workflow:
    """A named chain of calls made through ``caller``."""

    def __init__(self, name: str, spec: WorkflowSpec, caller: Caller, logger: Logger,
                 observe_step: Callable[[str, float], None] | None = None) -> None:
        self.name = name
        self.spec = spec
        self._caller = caller
        self._logger = logger
        self._observe = observe_step
        self._targets = [(step, *_split_path(step.path)) for step in spec.steps]

    def _budget(self, timeout: float | None) -> float | None:
        """The whole chain's time: the tighter of the workflow's and the event's."""
        limits = [t for t in (self.spec.timeout, timeout) if t is not None]
        return min(limits) if limits else None

    def _step_event(self, event: RawEvent, step: WorkflowStep, path: str,
                    query: dict[str, str], body: bytes, content_type: str) -> RawEvent:
        headers = {k: v for k, v in event.headers.items() if k.lower() not in _BODY_HEADERS}
        if content_type:
            headers["Content-Type"] = content_type
        return event._replace(id=new_event_id(), body=body, content_type=content_type,
                              headers=headers, fields=query, method=step.method, path=path,
                              url=step.path, timestamp=time.time())

    async def run(self, event: RawEvent, timeout: float | None) -> RawResponse:
        """The last step's response, or the first failing step's with the failed-step
        header; either way with ``Server-Timing`` for the steps that ran."""
        budget = self._budget(timeout)
        deadline = None if budget is None else time.monotonic() + budget
        body, content_type = event.body, event.content_type
        timings: list[tuple[str, float]] = []
        response: RawResponse | None = None
        for step, path, query in self._targets:
            step_timeout = step.timeout
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    response = error_response(
                        504, f"workflow {self.name!r} ran out of time ({budget} s) before "
                             f"step {step.name!r}")
                    return self._failed(step, response, timings, event)
                step_timeout = left if step_timeout is None else min(step_timeout, left)
            started = time.perf_counter()
            response = await self._call(step, self._step_event(event, step, path, query, body,
                                                               content_type), step_timeout)
            seconds = time.perf_counter() - started
            timings.append((step.name, seconds))
            self._record(step, response.status, seconds, event)
            if not _is_success(response.status):
                return self._failed(step, response, timings, event)
            body, content_type = response.body, response.content_type
        assert response is not None  # a workflow has at least one step (parse_workflow)
        headers = _with(response.headers, SERVER_TIMING_HEADER, server_timing(timings))
        return response._replace(headers=headers, event_id=event.id, logs=None)

    async def _call(self, step: WorkflowStep, event: RawEvent,
                    timeout: float | None) -> RawResponse:
        try:
            return await self._caller.call(step.function, event, timeout)
        except Exception as exc:  # a Caller answers failures; this one broke its contract
            self._logger.error_with("workflow step call raised", workflow=self.name,
                                    step=step.name, error=repr(exc))
            return error_response(502, f"step {step.name!r} could not call "
                                       f"{step.function!r}")

    def _record(self, step: WorkflowStep, status: int, seconds: float,
                event: RawEvent) -> None:
        self._logger.info_with("workflow step", workflow=self.name, step=step.name,
                               function=step.function, status=status,
                               ms=round(seconds * 1000, 3), event_id=event.id)
        if self._observe is not None:
            self._observe(step.name, seconds)

    def _failed(self, step: WorkflowStep, response: RawResponse,
                timings: list[tuple[str, float]], event: RawEvent) -> RawResponse:
        headers = _with(response.headers, FAILED_STEP_HEADER, step.name)
        if timings:
            headers = _with(headers, SERVER_TIMING_HEADER, server_timing(timings))
        self._logger.warn_with("workflow stopped", workflow=self.name, step=step.name,
                               status=response.status, event_id=event.id)
        return response._replace(headers=headers, event_id=event.id, logs=None)
