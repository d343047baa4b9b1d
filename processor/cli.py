"""``processor``: the command line entry point.

Exit status: 0 after a clean stop, 2 for any configuration problem (reported
before anything listens), 1 when the function's ``init_context`` fails.

The processor's own modules are imported inside ``main``, under
``collector_paused``: importing them and validating the config make some
hundred thousand objects that all live for the whole run, and the cyclic
garbage collector would otherwise walk them over and over on the way to
``/ready``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.function_config import PlatformConfig
    from processor.app import Processor
    from runtime.logger import Logger

EXIT_CONFIG = 2
EXIT_INIT = 1


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while the processor imports its modules and reads
    its config; they are frozen (as ``Processor.start`` freezes everything at ready)
    before the collector resumes, so it never walks them again.

    Only the processor's own start-up runs under it: the collector is back before any
    of the function's code runs (handler import, ``init_context``). The cyclic garbage
    of those imports (about 2,000 objects, 0.5 MiB) is frozen with them instead of being
    collected; walking every start-up object to find it would cost the time saved.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    from core.function_config import DEFAULT_CONFIG_PATH

    parser = argparse.ArgumentParser(
        prog="processor", description="Run a Nuclio Python function behind its triggers.",
        epilog="Kubernetes: 'processor kube render --config function.yaml' prints manifests "
               "(see 'processor kube render --help').")
    parser.add_argument("--config", action="append", default=None,
                        help="function.yaml, or a directory holding */function.yaml; repeat "
                             "to host several functions in one processor (default: "
                             f"$NUCLIO_PROCESSOR_CONFIG, else {DEFAULT_CONFIG_PATH})")
    parser.add_argument("--platform-config", default=os.environ.get("NUCLIO_PLATFORM_CONFIG"),
                        help="Nuclio platform.yaml (health check, metrics, logger)")
    parser.add_argument("--function-dir", default=None,
                        help="where the handler module lives (default: the config's folder)")
    parser.add_argument("--listen-host", default=os.environ.get("NUCLIO_LISTEN_HOST", "0.0.0.0"),
                        help="host for listen addresses that name only a port, such as "
                             "':8080' (default: %(default)s; 127.0.0.1 keeps a sidecar private)")
    parser.add_argument("--log-format", choices=["json", "text"], default=None,
                        help="log line format (default: json, or the platform logger sink's "
                             "attributes.encoding)")
    parser.add_argument("--log-level", default=None,
                        help="debug|info|warn|error (default: from the platform config, else info)")
    return parser.parse_args(argv)


def _logging_choices(platform: PlatformConfig, args: argparse.Namespace) -> tuple[int, int, str]:
    from runtime.logger import INFO, parse_level

    logger = platform.logger
    system = parse_level(logger.system[0].level if logger.system else None, INFO)
    functions = parse_level(logger.functions[0].level if logger.functions else None, system)
    if args.log_level:
        system = functions = parse_level(args.log_level, INFO)
    fmt = args.log_format
    if fmt is None:
        encodings = [s.attributes.get("encoding") for s in logger.sinks.values()]
        fmt = "text" if any(e in ("console", "text") for e in encodings) else "json"
    return system, functions, fmt


def _use_uvloop() -> None:
    import asyncio

    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _prepare(argv: list[str]) -> tuple[Processor, Logger]:
    """Everything before the function's own code runs: arguments, config (a problem
    exits 2 here), process workers started, the processor built."""
    from core.config import ConfigError
    from core.function_config import DEFAULT_CONFIG_PATH, load_platform_config
    from core.function_set import load_function_configs
    from processor.startup import (
        apply_env,
        ca_certificates_on_first_use,
        import_trigger_modules,
        prespawn_workers,
    )
    from runtime.logger import INFO, Logger

    args = _parse_args(argv)
    boot = Logger("processor", INFO, args.log_format or "json")
    try:
        if args.log_level and args.log_level.lower() not in ("debug", "info", "warn", "warning",
                                                             "error"):
            raise ConfigError(f"--log-level: expected debug, info, warn or error, "
                              f"got {args.log_level!r}")
        platform = load_platform_config(args.platform_config)
        paths = args.config or [os.environ.get("NUCLIO_PROCESSOR_CONFIG", DEFAULT_CONFIG_PATH)]
        configs = load_function_configs(paths, args.function_dir)
    except ConfigError as exc:
        boot.error(f"Configuration error: {exc}")
        sys.exit(EXIT_CONFIG)
    system_level, function_level, fmt = _logging_choices(platform, args)
    logger = Logger("processor", system_level, fmt)
    apply_env(configs)
    for config in configs:
        prespawn_workers(config, function_level, fmt)
    # Only now the heavy imports (aiohttp, prometheus-client), while workers start.
    with ca_certificates_on_first_use():
        from processor.app import Processor

        import_trigger_modules(configs)
    _use_uvloop()
    processor = Processor(configs, platform, logger, function_level, fmt, args.listen_host)
    return processor, logger


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["kube"]:
        from processor.kube.cli import main as kube_main

        kube_main(argv[1:])
        return
    from runtime import warm_worker

    warm_worker.start()  # before the imports below, so its start-up overlaps them
    try:
        with collector_paused():
            processor, logger = _prepare(argv)
    except SystemExit:
        warm_worker.discard()
        raise
    import asyncio

    from core.config import ConfigError
    from processor.app import FunctionInitError

    try:
        asyncio.run(processor.run())
    except ConfigError as exc:
        logger.error(f"Configuration error: {exc}")
        sys.exit(EXIT_CONFIG)
    except FunctionInitError as exc:
        logger.error(f"Function failed to initialise: {exc}")
        sys.exit(EXIT_INIT)
    except KeyboardInterrupt:
        pass
    sys.exit(processor.exit_code)


if __name__ == "__main__":
    main()
