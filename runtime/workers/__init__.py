"""Worker kinds and the choice between them.

``process`` (default for sync handlers): Nuclio's model, one OS process per
worker, isolated and truly parallel. ``async`` (default for ``async def``
handlers): events run on the processor's loop. ``thread``: sync handlers on
threads, for I/O-bound code that must share memory.

A process worker imports this package too (``process_main`` lives in it), so it
imports only what a worker needs: the pool (and asyncio with it) and ``ast`` are
imported where they are used, in the processor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from runtime.function import FunctionRunner, FunctionSettings
from runtime.handler import (
    LoadedHandler,
    add_function_dir,
    find_module_spec,
    load_handler,
    split_handler,
)
from runtime.logger import Logger

if TYPE_CHECKING:
    from runtime.pool import Worker, WorkerPool

WorkerKind = Literal["process", "thread", "async"]
WORKER_KINDS: tuple[str, ...] = ("process", "thread", "async")


class WorkerKindError(Exception):
    """The chosen worker kind cannot run this handler."""


def handler_is_async(spec: str, function_dir: str) -> bool:
    """Reads (without running) the handler's module to see if it is ``async def``."""
    import ast

    module, function = split_handler(spec)
    add_function_dir(function_dir)
    try:
        found = find_module_spec(module, function_dir)
    except (ImportError, ValueError):
        return False
    if found is None or not found.origin or not found.origin.endswith(".py"):
        return False
    try:
        with open(found.origin, encoding="utf-8") as source:
            tree = ast.parse(source.read())
    except (OSError, SyntaxError, ValueError):
        return False
    for node in tree.body:
        if isinstance(node, ast.AsyncFunctionDef) and node.name == function:
            return True
    return False


def resolve_kind(requested: str, settings: FunctionSettings) -> WorkerKind:
    if requested in WORKER_KINDS:
        return requested  # type: ignore[return-value]
    return "async" if handler_is_async(settings.handler, settings.function_dir) else "process"


def build_pool(kind: WorkerKind, settings: FunctionSettings, size: int, *,
               availability_timeout: float, event_timeout: float | None, max_waiting: int,
               logger: Logger, loaded: LoadedHandler | None = None,
               events_per_worker: int = 1) -> WorkerPool:
    """A pool of ``size`` workers of ``kind``; in-process kinds import the handler here.
    ``events_per_worker`` > 1 pipelines events to process and thread workers (queued in
    the worker, run in order); async slots run every event they are given at once, so
    they keep one event per slot."""
    from runtime.pool import WorkerPool

    pool: WorkerPool
    factory: object
    line = None
    if kind in ("process", "thread") and events_per_worker == 1:
        from runtime.waiting_line import WaitingLine

        # Nuclio's allocation: waiting events in one line, served as each worker finishes.
        line = WaitingLine()
    if kind == "process":
        from runtime.workers.process import claim_worker

        def factory(worker_id: str) -> Worker:
            return claim_worker(worker_id, settings, lambda w, why: pool.worker_exited(w, why),
                                line)
    else:
        loaded = loaded or load_handler(settings.handler, settings.function_dir)
        if kind == "thread":
            from runtime.workers.thread import ThreadWorker

            def factory(worker_id: str) -> Worker:
                return ThreadWorker(worker_id, loaded, settings, line)
        else:
            if not loaded.is_async:
                raise WorkerKindError(
                    f"worker kind 'async' needs an 'async def' handler, but {settings.handler!r} "
                    "is a plain function (use 'process' or 'thread')")
            from runtime.workers.asyncio_ import AsyncSlot, SharedAsyncFunction

            shared = SharedAsyncFunction(FunctionRunner(loaded, settings, "0"))

            def factory(worker_id: str) -> Worker:
                return AsyncSlot(worker_id, shared)
    pool = WorkerPool(f"{settings.trigger_name}", factory, size,
                      availability_timeout=availability_timeout, event_timeout=event_timeout,
                      max_waiting=max_waiting, logger=logger,
                      events_per_worker=events_per_worker if kind in ("process", "thread") else 1,
                      line=line)
    return pool
