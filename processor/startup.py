"""Start-up work that must not wait for the processor's heavier imports.

Importing aiohttp and prometheus-client takes a good part of a cold start;
process workers need neither, so the CLI starts them first and the two
overlap. Everything here imports only the runtime.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from core.function_config import LoadedConfig, ResolvedTrigger
from runtime.function import FunctionSettings
from runtime.handler import split_handler
from runtime.workers import resolve_kind
from runtime.workers.process import base_env, prespawn, set_base_env
from triggers.registry import TRIGGERS, trigger_class


def function_settings(config: LoadedConfig, trigger: ResolvedTrigger, log_level: int,
                      log_format: str) -> FunctionSettings:
    fn = config.function
    return FunctionSettings(
        handler=fn.spec.handler, function_dir=config.function_dir,
        function_name=fn.metadata.name, namespace=fn.metadata.namespace,
        trigger_kind=trigger.kind, trigger_name=trigger.name,
        log_level=log_level, log_format=log_format,
        expose_tracebacks=fn.spec.runtimeAttributes.exposeTracebacks,
        env=tuple(function_env(config, base_env()).items()))


def prespawn_workers(config: LoadedConfig, log_level: int, log_format: str) -> None:
    """Starts the process workers of every trigger the processor will run."""
    if not config.function.spec.handler:
        return  # a workflow: no handler, no workers
    split_handler(config.function.spec.handler)
    requested = config.function.spec.runtimeAttributes.workerKind
    for trigger in config.triggers:
        if trigger.kind not in TRIGGERS:
            continue  # reported as a config error later
        settings = function_settings(config, trigger, log_level, log_format)
        if resolve_kind(requested, settings) == "process":
            prespawn(settings, trigger.num_workers)


def import_trigger_modules(configs: list[LoadedConfig]) -> None:
    """Imports the modules of the trigger kinds in use, which building the processor
    would import anyway, so that the CLI does it while the collector is paused
    (``processor.cli.collector_paused``). A module that fails to import is left for the
    build, which reports the failure as it always has."""
    for kind in sorted({t.kind for config in configs for t in config.triggers}):
        if kind in TRIGGERS:
            with contextlib.suppress(Exception):
                trigger_class(kind)


def function_env(config: LoadedConfig, base: Any) -> dict[str, str]:
    """What Nuclio's platform puts in a function's environment: ``spec.env`` and the
    function's metadata (the latter only where ``base`` does not set it already)."""
    function = config.function
    env = {var.name: var.value for var in function.spec.env}
    for name, value in (("NUCLIO_FUNCTION_NAME", function.metadata.name),
                        ("NUCLIO_FUNCTION_HANDLER", function.spec.handler),
                        ("NUCLIO_FUNCTION_VERSION", "latest"),
                        ("NUCLIO_NAMESPACE", function.metadata.namespace),
                        ("NUCLIO_FUNCTION_DIR", config.function_dir)):
        if name not in base and name not in env:
            env[name] = value
    return env


def apply_env(configs: list[LoadedConfig]) -> None:
    """Puts every function's env in the processor's environment, which thread and async
    workers share (with several functions, a name set by two takes the later one's
    value); process workers get the environment as it was before, plus their own
    function's env only."""
    if len(configs) > 1:
        set_base_env(dict(os.environ))
    base = dict(os.environ)
    for config in configs:
        os.environ.update(function_env(config, base))


@contextlib.contextmanager
def ca_certificates_on_first_use() -> Iterator[None]:
    """Imports under this defer the CA store loading of aiohttp's two default client
    SSL contexts (made at import, ~20 ms each) until a client first asks for one.

    The processor serves plain HTTP; most runs never make an HTTPS client call in
    the processor's own process, and a cold start should not pay for one. The same
    contexts get the same ``set_default_verify_paths()`` call, only later; if aiohttp
    does not look as expected, they are loaded at once, exactly as aiohttp would.
    """
    import ssl

    original = ssl.SSLContext.set_default_verify_paths
    deferred: list[ssl.SSLContext] = []
    ssl.SSLContext.set_default_verify_paths = (  # type: ignore[method-assign]
        lambda self: deferred.append(self))
    try:
        yield
    finally:
        ssl.SSLContext.set_default_verify_paths = original  # type: ignore[method-assign]
    if not deferred:
        return
    connector: Any = sys.modules.get("aiohttp.connector")
    tcp: Any = getattr(connector, "TCPConnector", None)
    get_context = getattr(tcp, "_get_ssl_context", None)
    expected = [getattr(connector, "_SSL_CONTEXT_VERIFIED", None),
                getattr(connector, "_SSL_CONTEXT_UNVERIFIED", None)]
    if get_context is None or len(deferred) != 2 or any(
            not any(c is e for e in expected) for c in deferred):
        for context in deferred:
            original(context)
        return

    def load_then_get(self: Any, request: Any) -> Any:
        tcp._get_ssl_context = get_context
        for context in deferred:
            original(context)
        deferred.clear()
        return get_context(self, request)

    tcp._get_ssl_context = load_then_get
