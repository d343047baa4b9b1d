"""The processor's ``Caller``: a hosted function runs in its own pool, others over HTTP.

Every call between functions (``call_function`` from any worker kind, the front door's
routing, workflow steps) comes through ``FunctionCaller.call``, which is where a hop is
made: the call depth goes up by one (and a chain too deep is a 508), the trace gets a
new span id, and ``X-Nuclio-Target`` names the callee as Nuclio's platform does.

A local call is one ``WorkerPool.submit``, no HTTP and no socket: the pool's own
rules apply (an exhausted pool answers 503 after its availability timeout, so a
function waiting for a worker of its own pool never deadlocks). A call that overruns
its ``timeout`` answers 504 at once; the callee's event goes on in the background and
its late answer is dropped, so the callee's worker is not killed for the caller's hurry.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fusion.calls import (
    CALL_DEPTH_HEADER,
    Caller,
    call_depth,
    hop_headers,
    loop_detected,
    timed_out,
    unknown_function,
)
from runtime.events import RawEvent, new_event_id
from runtime.function import Result
from runtime.logger import Logger, event_headers
from runtime.pool import WorkerUnavailable
from runtime.responses import RawResponse, error_response

Submit = Callable[[RawEvent], Awaitable[Result]]


@dataclass(frozen=True)
class LocalTarget:
    """Where events for a hosted function go: the pool of its first http trigger (else
    of its first trigger), named as that trigger so the event looks the same."""

    submit: Submit
    trigger_kind: str
    trigger_name: str
    pool_size: int


def _drop_result(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never awaited


class FunctionCaller:
    def __init__(self, targets: dict[str, LocalTarget], remote: Caller | None,
                 is_mapped: Callable[[str], bool], max_depth: int, logger: Logger) -> None:
        self.targets = targets
        self._remote = remote
        self._is_mapped = is_mapped
        self.max_depth = max_depth
        self._logger = logger
        self._late: set[asyncio.Task[Any]] = set()

    def is_known(self, name: str) -> bool:
        """Hosted here, or with an address to call it at."""
        return name in self.targets or self._is_mapped(name)

    async def call(self, name: str, event: RawEvent, timeout: float | None) -> RawResponse:
        """``event`` carries the caller's headers; the callee gets the next hop's."""
        # The outside request is depth 1 (no header); the callee here is one deeper.
        if call_depth(event.headers) + 2 > self.max_depth:
            return loop_detected(name, self.max_depth)
        headers = hop_headers(name, event.headers)
        token = event_headers.set(headers)  # processor log lines of this call carry the trace
        try:
            target = self.targets.get(name)
            self._logger.debug_with("Calling function", function=name,
                                    where="local" if target is not None else "remote",
                                    depth=headers[CALL_DEPTH_HEADER])
            if target is None:
                if self._remote is None or not self._is_mapped(name):
                    return unknown_function(name)
                # The remote caller makes the hop itself (its own headers, same rules).
                return await self._remote.call(name, event, timeout)
            raw = event._replace(id=new_event_id(), headers=headers,
                                 trigger_kind=target.trigger_kind,
                                 trigger_name=target.trigger_name, log_level=None)
            return await self._local(target, name, raw, timeout)
        finally:
            event_headers.reset(token)

    async def _local(self, target: LocalTarget, name: str, raw: RawEvent,
                     timeout: float | None) -> RawResponse:
        task = asyncio.ensure_future(target.submit(raw))
        try:
            done, _ = await asyncio.wait({task}, timeout=timeout)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            self._late.add(task)
            task.add_done_callback(self._late.discard)
            task.add_done_callback(_drop_result)
            return timed_out(name, timeout)
        try:
            result = task.result()
        except WorkerUnavailable as exc:
            return error_response(503, f"function {name!r}: {exc}")
        assert not isinstance(result, list)
        return result._replace(logs=None)


def in_cluster() -> bool:
    """Nuclio's default address (its Kubernetes service) only resolves in a cluster."""
    return "KUBERNETES_SERVICE_HOST" in os.environ
