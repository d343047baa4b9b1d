"""The processor's life: resolve, bind, load, listen, serve, drain, stop.

Phases, in order, each with one job:
1. build triggers and pools from the validated config (no side effects);
2. bind every socket (a taken port fails here, before anything listens);
3. workers import the handler (a broken handler fails here, exit 2);
4. health and metrics listen; workers run ``init_context``;
5. triggers listen; ``/ready`` turns 200;
6. on SIGTERM/SIGINT: stop accepting, drain in-flight events, run termination
   callbacks, stop workers, exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from dataclasses import dataclass
from typing import Any

from core.config import DEFAULT_HTTP_PORT, ConfigError, unknown_keys, validate_model
from core.function_config import (
    LoadedConfig,
    PlatformConfig,
    ResolvedTrigger,
    platform_addresses,
    prometheus_pull_sink,
)
from core.metrics import Metrics, instance_name
from core.sink import Sink, SinkSpec
from processor.health import HealthServer
from processor.startup import function_settings
from processor.status.document import FunctionInfo, StatusBuilder, clean_urls
from processor.status.server import StatusRoutes
from runtime.function import FunctionSettings
from runtime.handler import HandlerLoadError, LoadedHandler, check_module_exists, load_handler
from runtime.logger import Logger
from runtime.pool import WorkerPool, WorkerStartError
from runtime.workers import WorkerKindError, build_pool, resolve_kind
from runtime.workers.process import discard_unclaimed
from sinks.registry import sink_class
from triggers.base import Trigger
from triggers.registry import configured_trigger


def _instance_template(platform: PlatformConfig) -> str | None:
    """The prometheusPull sink's ``instanceName`` attribute (Nuclio's ``instance`` label)."""
    found = prometheus_pull_sink(platform)
    template = found[1].attributes.get("instanceName") if found else None
    return str(template) if template else None


class FunctionInitError(Exception):
    """``init_context`` failed: the function cannot serve (exit 1)."""


@dataclass
class _Running:
    trigger: Trigger
    pool: WorkerPool


class Processor:
    def __init__(self, config: LoadedConfig, platform: PlatformConfig, logger: Logger,
                 function_log_level: int, log_format: str, listen_host: str = "0.0.0.0"
                 ) -> None:
        self._listen_host = listen_host
        self.config = config
        self.platform = platform
        self.logger = logger
        self._function_log_level = function_log_level
        self._log_format = log_format
        meta = config.function.metadata
        self.metrics = Metrics(meta.name, meta.namespace,
                               instance_name(_instance_template(platform), meta.namespace,
                                             meta.name))
        self._running: list[_Running] = []
        self._health: HealthServer | None = None
        self._stop = asyncio.Event()
        self.exit_code = 0
        self._started = time.monotonic()
        self._phase = "starting"  # -> ready -> draining: /ready and the status page
        self._worker_kind = "unknown"

    # -- phase 1: build -----------------------------------------------------------
    def _settings(self, trigger: ResolvedTrigger) -> FunctionSettings:
        return function_settings(self.config, trigger, self._function_log_level,
                                 self._log_format)

    def build(self) -> None:
        spec = self.config.function.spec
        try:
            check_module_exists(spec.handler, self.config.function_dir)
        except HandlerLoadError as exc:
            raise ConfigError(f"spec.handler: {exc}") from None
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
            settings = self._settings(trig)
            kind = resolve_kind(spec.runtimeAttributes.workerKind, settings)
            self._worker_kind = kind
            if kind != "process" and loaded is None:
                try:
                    loaded = load_handler(spec.handler, self.config.function_dir)
                except HandlerLoadError as exc:
                    raise ConfigError(f"spec.handler: {exc}") from None
            try:
                pool = build_pool(kind, settings, trig.num_workers,
                                  availability_timeout=trig.availability_timeout,
                                  event_timeout=spec.eventTimeout or None,
                                  max_waiting=spec.runtimeAttributes.maxWaitingEvents,
                                  logger=self.logger, loaded=loaded)
            except WorkerKindError as exc:
                raise ConfigError(f"spec.runtimeAttributes.workerKind: {exc}") from None
            self.metrics.add_pool(trig.kind, trig.name, pool)
            trigger = cls(trig, attributes, pool, self.metrics.for_trigger(trig.kind, trig.name),
                          self.logger, self.request_stop)
            sink_spec = getattr(attributes, "sink", None)
            if isinstance(sink_spec, SinkSpec):
                trigger.sink = self._build_sink(trig, sink_spec, f"{attrs_path}.sink")
            self._running.append(_Running(trigger, pool))
            self.logger.debug_with("Trigger configured", trigger=trig.name, kind=trig.kind,
                                   worker_kind=kind, workers=trig.num_workers)

    def _port_taken(self, port: int) -> bool:
        return any(port in r.trigger.listen_ports() for r in self._running)

    def _build_sink(self, trig: ResolvedTrigger, spec: SinkSpec, yaml_path: str) -> Sink:
        cls = sink_class(spec.kind, yaml_path)
        attrs_path = f"{yaml_path}.attributes"
        for warning in unknown_keys(cls.Attributes, spec.attributes):
            self.logger.warn_with(f"{attrs_path}: {warning}", trigger=trig.name)
        attributes = validate_model(cls.Attributes, spec.attributes, attrs_path)
        metrics = self.metrics.for_sink(trig.kind, trig.name, spec.kind)
        return cls(trig.name, attributes, metrics, self.logger)

    # -- phase 2: bind -----------------------------------------------------------------
    def bind(self) -> None:
        host = self._listen_host
        health, metrics_address = platform_addresses(self.platform, host)
        self._health = HealthServer(health, metrics_address, self.metrics, self._ready_probe,
                                    self._status_routes())
        for running in self._running:
            running.trigger.bind(host)
            if running.trigger.sink is not None:
                running.trigger.sink.bind(host)

    def _status_routes(self) -> StatusRoutes | None:
        dashboard = self.platform.healthCheck.dashboard
        if not dashboard.enabled:
            return None
        fn = self.config.function
        info = FunctionInfo(fn.metadata.name, fn.metadata.namespace, fn.spec.handler,
                            fn.spec.runtime, self._worker_kind)
        builder = StatusBuilder(info, lambda: self._running, self.metrics, lambda: self._phase,
                                preview=dashboard.preview)
        return StatusRoutes(builder, preview=dashboard.preview)

    def _ready_probe(self) -> tuple[bool, dict[str, Any]]:
        triggers = {}
        for r in self._running:
            details = {"kind": r.trigger.kind, "ready": r.pool.ready, "workers": r.pool.size,
                       "busy": r.pool.busy_workers, **r.trigger.status()}
            if r.trigger.sink is not None:
                details["sink"] = {"kind": r.trigger.sink.kind, **r.trigger.sink.status()}
            if not r.trigger.ready:
                details["ready"] = False
            triggers[r.trigger.name] = details
        ready = self._phase == "ready" and all(r.trigger.ready for r in self._running)
        return ready, {"triggers": clean_urls(triggers)}  # no user:password in URLs

    # -- phases 3-5: start ------------------------------------------------------------
    async def start(self) -> None:
        try:
            await asyncio.gather(*(r.pool.load() for r in self._running))
        except WorkerStartError as exc:
            raise ConfigError(f"spec.handler: {exc}") from None
        finally:
            discard_unclaimed()  # pools have claimed their prespawned workers by now
        assert self._health is not None
        await self._health.start()
        try:
            await asyncio.gather(*(r.pool.init() for r in self._running))
        except WorkerStartError as exc:
            raise FunctionInitError(str(exc)) from None
        for running in self._running:
            if running.trigger.sink is not None:
                await running.trigger.sink.start()
        for running in self._running:
            await running.trigger.start()
        self._phase = "ready"
        # Start-up objects (config models, modules) live for the whole run: move them out
        # of the collector's sight so that collections only scan per-event garbage.
        gc.freeze()
        self.logger.info_with("Processor ready", function=self.config.function.metadata.name,
                              seconds=round(time.monotonic() - self._started, 3),
                              loop=type(asyncio.get_running_loop()).__module__)

    # -- phase 6: stop -------------------------------------------------------------------
    def request_stop(self, exit_code: int = 0, reason: str | None = None) -> None:
        """Signals and triggers (a finished job) end the processor through here; the first
        non-zero exit code asked for wins."""
        if exit_code and not self.exit_code:
            self.exit_code = exit_code
        if reason:
            self.logger.info_with("Stop requested", reason=reason, exit_code=exit_code)
        self._stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            self.build()
            self.bind()
            if not await self._start_unless_stopped():
                self.logger.info("Stopped during start-up")
                return
            await self._stop.wait()
            self.logger.info("Stopping: no new events; draining in-flight events")
        finally:
            await self.shutdown()

    async def _start_unless_stopped(self) -> bool:
        """Starts up, unless a signal comes first (a hung init_context must not make the
        processor unstoppable)."""
        starting = asyncio.ensure_future(self.start())
        stopping = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            stopping.cancel()
            starting.result()  # re-raise start-up errors
            return True
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await starting
        return False

    async def shutdown(self) -> None:
        self._phase = "draining"
        for running in self._running:
            await running.trigger.stop_accepting()
        for running in self._running:
            timeout = running.trigger.config.termination_timeout
            if not await running.pool.drain(timeout):
                self.logger.warn_with("Events still running after workerTerminationTimeout",
                                      trigger=running.trigger.name,
                                      inflight=running.pool.inflight)
        for running in self._running:
            # A pool that never got ready has nothing to finish: do not wait for it.
            timeout = running.trigger.config.termination_timeout if running.pool.ready else 0.5
            await running.pool.stop(timeout)
            await running.trigger.close()
            if running.trigger.sink is not None:
                await running.trigger.sink.close()
        if self._health is not None:
            await self._health.close()
        self.logger.info("Processor stopped")
