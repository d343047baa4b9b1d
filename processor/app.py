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
from typing import TYPE_CHECKING, Any

from core.config import ConfigError, parse_address
from core.function_config import (
    DEFAULT_TERMINATION_TIMEOUT,
    LoadedConfig,
    PlatformConfig,
    platform_addresses,
    prometheus_pull_sink,
)
from core.metrics import Metrics, instance_name
from fusion.local import FunctionCaller, in_cluster
from fusion.remote import RemoteCaller
from processor.health import HealthServer
from processor.hosted import HostedFunction, Running
from processor.status.document import StatusBuilder, clean_urls
from processor.status.server import StatusRoutes
from runtime.calls import install as install_calls
from runtime.calls import uninstall as uninstall_calls
from runtime.logger import Logger
from runtime.pool import WorkerStartError
from runtime.workers.process import discard_unclaimed

if TYPE_CHECKING:  # imported in bind, only when a front door is configured
    from fusion.front_door import FrontDoor


def _instance_template(platform: PlatformConfig) -> str | None:
    """The prometheusPull sink's ``instanceName`` attribute (Nuclio's ``instance`` label)."""
    found = prometheus_pull_sink(platform)
    template = found[1].attributes.get("instanceName") if found else None
    return str(template) if template else None


class FunctionInitError(Exception):
    """``init_context`` failed: the function cannot serve (exit 1)."""


class Processor:
    def __init__(self, configs: LoadedConfig | list[LoadedConfig], platform: PlatformConfig,
                 logger: Logger, function_log_level: int, log_format: str,
                 listen_host: str = "0.0.0.0") -> None:
        configs = configs if isinstance(configs, list) else [configs]
        self._listen_host = listen_host
        self.config = configs[0]
        self.platform = platform
        self.logger = logger
        template = _instance_template(platform)
        meta = configs[0].function.metadata
        self.metrics = Metrics(meta.name, meta.namespace,
                               instance_name(template, meta.namespace, meta.name))
        many = len(configs) > 1
        fusion = platform.fusion
        # Built before the functions (workflow steps call through it) and told which
        # functions are hosted once they are built.
        # No depth limit of its own: the FunctionCaller in front checks the configured one.
        self._remote = RemoteCaller(fusion.functionAddresses, meta.namespace)
        cluster = in_cluster()  # where Nuclio's default service address resolves
        self.caller = FunctionCaller({}, self._remote,
                                     lambda name: self._remote.knows(name) or cluster,
                                     fusion.maxCallDepth, logger)
        self.functions: list[HostedFunction] = []
        for config in configs:
            meta = config.function.metadata
            metrics = self.metrics if config is configs[0] else self.metrics.for_function(
                meta.name, meta.namespace, instance_name(template, meta.namespace, meta.name))
            self.functions.append(HostedFunction(
                config, metrics, logger, function_log_level, log_format,
                self.request_stop, self.caller, f"{config.source}: " if many else ""))
        self._running: list[Running] = []
        self._health: HealthServer | None = None
        self._front_door: FrontDoor | None = None
        self._stop = asyncio.Event()
        self.exit_code = 0
        self._started = time.monotonic()
        self._phase = "starting"  # -> ready -> draining: /ready and the status page

    @property
    def many(self) -> bool:
        return len(self.functions) > 1

    # -- phase 1: build -----------------------------------------------------------
    def build(self) -> None:
        for hosted in self.functions:
            hosted.build()
            self._running.extend(hosted.running)
        for hosted in self.functions:
            if (target := hosted.target()) is not None:
                self.caller.targets[hosted.name] = target
        for hosted in self.functions:
            # Hosted, or an address configured (Nuclio's default service name is a guess:
            # a config check does not count on it).
            hosted.check_workflow(lambda name: name in self.caller.targets
                                  or self._remote.knows(name))

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
        door = self.platform.fusion.frontDoor
        if door.enabled and door.listenAddress:
            from fusion.front_door import FrontDoor

            self._front_door = FrontDoor(
                parse_address(door.listenAddress, "platform config fusion.frontDoor.listenAddress",
                              host),
                self.caller.targets, door.maxRequestBodySize, door.async_,
                self.metrics.registry, self.logger)
            self._front_door.bind()

    def _status_routes(self) -> StatusRoutes | None:
        dashboard = self.platform.healthCheck.dashboard
        if not dashboard.enabled:
            return None
        builder = StatusBuilder(self.functions[0].info, lambda: self._running, self.metrics,
                                lambda: self._phase, preview=dashboard.preview,
                                functions=(lambda: [h.info for h in self.functions])
                                if self.many else None)
        return StatusRoutes(builder, preview=dashboard.preview)

    def _ready_probe(self) -> tuple[bool, dict[str, Any]]:
        ready = self._phase == "ready" and all(h.ready() for h in self.functions)
        if not self.many:
            return ready, {"triggers": clean_urls(self.functions[0].triggers_status())}
        functions = {h.name: {"ready": self._phase == "ready" and h.ready(),
                              "triggers": h.triggers_status()} for h in self.functions}
        return ready, {"functions": clean_urls(functions)}  # no user:password in URLs

    # -- phases 3-5: start ------------------------------------------------------------
    async def start(self) -> None:
        install_calls(self.caller.call, asyncio.get_running_loop())
        try:
            await asyncio.gather(*(self._load(h) for h in self.functions))
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
        if self._front_door is not None:
            await self._front_door.start()
        self._phase = "ready"
        # Start-up objects (config models, modules) live for the whole run: move them out
        # of the collector's sight so that collections only scan per-event garbage.
        gc.freeze()
        names: dict[str, Any] = ({"functions": [h.name for h in self.functions]} if self.many
                                 else {"function": self.functions[0].name})
        self.logger.info_with("Processor ready", **names,
                              seconds=round(time.monotonic() - self._started, 3),
                              loop=type(asyncio.get_running_loop()).__module__)

    @staticmethod
    async def _load(hosted: HostedFunction) -> None:
        """Phase 3 for one function; a broken handler is a config error naming its file."""
        try:
            await asyncio.gather(*(r.pool.load() for r in hosted.running))
        except WorkerStartError as exc:
            raise ConfigError(f"{hosted.where}spec.handler: {exc}") from None

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
        if self._front_door is not None:
            self._front_door.stop_accepting()
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
        if self._front_door is not None:
            await self._front_door.close(DEFAULT_TERMINATION_TIMEOUT)
        with contextlib.suppress(Exception):
            await self._remote.close()
        uninstall_calls()
        if self._health is not None:
            await self._health.close()
        self.logger.info("Processor stopped")
