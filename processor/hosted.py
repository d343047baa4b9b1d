"""One function the processor hosts: its triggers, pools, sinks, metrics and names.

A processor hosts one function (Nuclio's model) or several (fusion); each keeps its
own triggers, worker kind, pools, ``init_context``, handler directory, metrics
``function`` label and log name, so the processor's phases simply run over all of them.
With several, every YAML path in an error starts with the function's file.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.config import DEFAULT_HTTP_PORT, ConfigError, unknown_keys, validate_model
from core.function_config import LoadedConfig, ResolvedTrigger
from core.metrics import Metrics
from core.sink import Sink, SinkSpec
from fusion.calls import Caller
from fusion.local import LocalTarget
from processor.startup import function_settings
from processor.status.document import FunctionInfo
from runtime.function import FunctionSettings
from runtime.handler import HandlerLoadError, LoadedHandler, check_module_exists, load_handler
from runtime.logger import Logger
from runtime.pool import WorkerPool
from runtime.workers import WorkerKindError, build_pool, resolve_kind
from sinks.registry import sink_class
from triggers.base import StopRequest, Trigger
from triggers.registry import configured_trigger

if TYPE_CHECKING:  # imported by the functions that are workflows, when they are built
    from fusion.workflow_config import WorkflowSpec


@dataclass
class Running:
    trigger: Trigger
    pool: WorkerPool
    function: str = ""


class HostedFunction:
    def __init__(self, config: LoadedConfig, metrics: Metrics, logger: Logger,
                 function_log_level: int, log_format: str, request_stop: StopRequest,
                 caller: Caller, where: str = "") -> None:
        self.config = config
        # Workflow steps call through it (filled with every hosted function after build).
        self._caller = caller
        self.workflow: WorkflowSpec | None = None
        self.name = config.function.metadata.name
        self.metrics = metrics
        self.logger = logger
        # "<file>: " when the processor hosts several functions, else "".
        self.where = where
        self._function_log_level = function_log_level
        self._log_format = log_format
        self._request_stop = request_stop
        self.running: list[Running] = []
        self.worker_kind = "unknown"

    @property
    def info(self) -> FunctionInfo:
        fn = self.config.function
        return FunctionInfo(fn.metadata.name, fn.metadata.namespace, fn.spec.handler,
                            fn.spec.runtime, self.worker_kind)

    def settings(self, trigger: ResolvedTrigger) -> FunctionSettings:
        return function_settings(self.config, trigger, self._function_log_level,
                                 self._log_format)

    # -- build (no side effects) ----------------------------------------------------
    def build(self) -> None:
        spec = self.config.function.spec
        if not spec.handler:
            # A workflow's modules (and pydantic models) load only for a workflow: a
            # cold start of a handler function does not pay for them.
            from fusion.workflow_config import parse_workflow

            self.workflow = parse_workflow(spec.workflow, f"{self.where}spec.workflow")
            self.worker_kind = "workflow"
        else:
            try:
                check_module_exists(spec.handler, self.config.function_dir)
            except HandlerLoadError as exc:
                raise ConfigError(f"{self.where}spec.handler: {exc}") from None
        loaded: LoadedHandler | None = None
        for trig in self.config.triggers:
            if trig.implicit and self._port_taken(DEFAULT_HTTP_PORT):
                # e.g. openinference's REST port defaults to 8080 too: its config wins.
                self.logger.info_with("Not adding the default HTTP trigger: its port is "
                                      "configured for another trigger", port=DEFAULT_HTTP_PORT)
                continue
            cls, attributes, warnings = configured_trigger(trig)
            for warning in warnings:
                self.logger.warn_with(warning, trigger=trig.name)
            attrs_path = f"{trig.yaml_path}.attributes"
            if self.workflow is not None:
                pool = self._workflow_pool(trig, self.workflow)
            else:
                pool, loaded = self._pool(trig, loaded)
            self.metrics.add_pool(trig.kind, trig.name, pool)
            trigger = cls(trig, attributes, pool, self.metrics.for_trigger(trig.kind, trig.name),
                          self.logger, self._request_stop)
            sink_spec = getattr(attributes, "sink", None)
            if isinstance(sink_spec, SinkSpec):
                trigger.sink = self._build_sink(trig, sink_spec, f"{attrs_path}.sink")
            self.running.append(Running(trigger, pool, self.name))
            self.logger.debug_with("Trigger configured", function=self.name, trigger=trig.name,
                                   kind=trig.kind, worker_kind=self.worker_kind,
                                   workers=trig.num_workers)

    def _pool(self, trig: ResolvedTrigger, loaded: LoadedHandler | None
              ) -> tuple[WorkerPool, LoadedHandler | None]:
        """The trigger's pool of handler workers (in-process kinds import the handler
        once per function, here)."""
        spec = self.config.function.spec
        settings = self.settings(trig)
        kind = resolve_kind(spec.runtimeAttributes.workerKind, settings)
        self.worker_kind = kind
        if kind != "process" and loaded is None:
            try:
                loaded = load_handler(spec.handler, self.config.function_dir)
            except HandlerLoadError as exc:
                raise ConfigError(f"{self.where}spec.handler: {exc}") from None
        try:
            pool = build_pool(kind, settings, trig.num_workers,
                              availability_timeout=trig.availability_timeout,
                              event_timeout=spec.eventTimeout or None,
                              max_waiting=spec.runtimeAttributes.maxWaitingEvents,
                              logger=self.logger, loaded=loaded,
                              events_per_worker=spec.runtimeAttributes.eventsPerWorker)
        except WorkerKindError as exc:
            raise ConfigError(f"{self.where}spec.runtimeAttributes.workerKind: {exc}") from None
        return pool, loaded

    def _workflow_pool(self, trig: ResolvedTrigger, workflow: WorkflowSpec) -> WorkerPool:
        from fusion.workflow_pool import build_workflow_pool

        spec = self.config.function.spec
        return build_workflow_pool(
            self.name, workflow, self._caller, self.logger,
            functools.partial(self.metrics.workflow_step, self.name),
            pool_name=trig.name, size=trig.num_workers,
            availability_timeout=trig.availability_timeout,
            event_timeout=spec.eventTimeout or None,
            max_waiting=spec.runtimeAttributes.maxWaitingEvents)

    def check_workflow(self, is_known: Callable[[str], bool]) -> None:
        """Every step's function is hosted here or has an address (after all are built)."""
        if self.workflow is not None:
            from fusion.workflow_config import check_targets

            check_targets(self.workflow, f"{self.where}spec.workflow", is_known)

    def _port_taken(self, port: int) -> bool:
        return any(port in r.trigger.listen_ports() for r in self.running)

    def _build_sink(self, trig: ResolvedTrigger, spec: SinkSpec, yaml_path: str) -> Sink:
        cls = sink_class(spec.kind, yaml_path)
        attrs_path = f"{yaml_path}.attributes"
        for warning in unknown_keys(cls.Attributes, spec.attributes):
            self.logger.warn_with(f"{attrs_path}: {warning}", trigger=trig.name)
        attributes = validate_model(cls.Attributes, spec.attributes, attrs_path)
        metrics = self.metrics.for_sink(trig.kind, trig.name, spec.kind)
        return cls(trig.name, attributes, metrics, self.logger)

    # -- views --------------------------------------------------------------------------
    def target(self) -> LocalTarget | None:
        """Where calls and front-door events for this function go: the pool of its first
        http trigger, else of its first trigger (None: it has no trigger at all)."""
        if not self.running:
            return None
        chosen = next((r for r in self.running if r.trigger.kind == "http"), self.running[0])
        return LocalTarget(chosen.pool.submit, chosen.trigger.kind, chosen.trigger.name,
                           chosen.pool.size)

    def ready(self) -> bool:
        return all(r.trigger.ready for r in self.running)

    def triggers_status(self) -> dict[str, Any]:
        triggers = {}
        for r in self.running:
            details = {"kind": r.trigger.kind, "ready": r.pool.ready, "workers": r.pool.size,
                       "busy": r.pool.busy_workers, **r.trigger.status()}
            if r.trigger.sink is not None:
                details["sink"] = {"kind": r.trigger.sink.kind, **r.trigger.sink.status()}
            if not r.trigger.ready:
                details["ready"] = False
            triggers[r.trigger.name] = details
        return triggers
