"""A workflow function's pool: its "workers" run ``Workflow.run`` on the event loop.

A function whose spec has ``workflow`` and no ``handler`` has no code to load, but its
triggers, the front door and async invocation all talk to a ``WorkerPool``. So it gets
one, of ``numWorkers`` slots, whose worker calls the workflow with the processor's
``Caller``: steps hosted here go straight to their pools, the others over HTTP.
Availability (503), ``eventTimeout`` (408), metrics and draining behave as for any pool.
"""

from __future__ import annotations

from collections.abc import Callable

from fusion.calls import Caller
from fusion.workflow import Workflow
from fusion.workflow_config import WorkflowSpec
from runtime.function import Payload, Result
from runtime.logger import Logger
from runtime.pool import Worker, WorkerPool


class WorkflowWorker:
    """One slot of a workflow's pool; the workflow itself holds no per-event state."""

    def __init__(self, worker_id: str, workflow: Workflow) -> None:
        self.worker_id = worker_id
        self._workflow = workflow

    async def load(self) -> None:
        """Nothing to import."""

    async def init(self) -> None:
        """No ``init_context``."""

    async def run(self, payload: Payload, timeout: float | None) -> Result:
        if isinstance(payload, list):
            return [await self._workflow.run(raw, timeout) for raw in payload]
        return await self._workflow.run(payload, timeout)

    async def stop(self, timeout: float) -> None:
        """In-flight runs were drained by the pool."""

    def kill(self) -> None:
        """A timed-out run is cancelled by the pool; nothing else to end."""


def build_workflow_pool(name: str, spec: WorkflowSpec, caller: Caller, logger: Logger,
                        observe_step: Callable[[str, float], None] | None, *, pool_name: str,
                        size: int, availability_timeout: float, event_timeout: float | None,
                        max_waiting: int) -> WorkerPool:
    """A pool of ``size`` slots, each running the workflow for one event at a time."""
    workflow = Workflow(name, spec, caller, logger, observe_step)

    def factory(worker_id: str) -> Worker:
        return WorkflowWorker(worker_id, workflow)

    return WorkerPool(pool_name, factory, size, availability_timeout=availability_timeout,
                      event_timeout=event_timeout, max_waiting=max_waiting, logger=logger)
