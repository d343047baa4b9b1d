"""A workflow function's pool: its "workers" run ``Workflow.run`` on the event loop.

A function whose spec has ``workflow`` and no ``handler`` has no code to load, but its
triggers, the front door and async invocation all talk to a ``WorkerPool``. So it gets
one, of ``numWorkers`` slots, whose worker calls the workflow with the processor's
``Caller``: steps hosted here go straight to their pools, the others over HTTP.
Availability (503), ``eventTimeout`` (408), metrics and draining behave as for any pool.

INTEGRATION POINT: ``fusion.workflow`` and ``fusion.workflow_config`` come from the
workflow branch; they are imported by name when a workflow function is configured, so
this branch builds without them and says so in a config error if they are missing.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from core.config import ConfigError
from fusion.calls import Caller
from runtime.function import Payload, Result
from runtime.logger import Logger
from runtime.pool import Worker, WorkerPool


def _module(name: str, yaml_path: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError:
        raise ConfigError(f"{yaml_path}: workflows need {name} (the workflow branch), which "
                          "this build does not have") from None


def parse(raw: Any, yaml_path: str) -> Any:
    """``fusion.workflow_config.parse_workflow``: a ``WorkflowSpec`` or a ConfigError."""
    return _module("fusion.workflow_config", yaml_path).parse_workflow(raw, yaml_path)


def check_targets(spec: Any, yaml_path: str, is_known: Callable[[str], bool]) -> None:
    _module("fusion.workflow_config", yaml_path).check_targets(spec, yaml_path, is_known)


class WorkflowWorker:
    """One slot of a workflow's pool; the workflow itself holds no per-event state."""

    def __init__(self, worker_id: str, workflow: Any) -> None:
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


def build_workflow_pool(name: str, spec: Any, yaml_path: str, caller: Caller, logger: Logger,
                        observe_step: Callable[[str, float], None] | None, *, pool_name: str,
                        size: int, availability_timeout: float, event_timeout: float | None,
                        max_waiting: int) -> WorkerPool:
    workflow = _module("fusion.workflow", yaml_path).Workflow(name, spec, caller, logger,
                                                              observe_step)

    def factory(worker_id: str) -> Worker:
        return WorkflowWorker(worker_id, workflow)

    return WorkerPool(pool_name, factory, size, availability_timeout=availability_timeout,
                      event_timeout=event_timeout, max_waiting=max_waiting, logger=logger)
