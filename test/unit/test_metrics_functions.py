"""One registry, several hosted functions: each keeps its ``function`` label, nothing is
registered twice, and state created lazily by one function's view is shared by all."""

from __future__ import annotations

import asyncio

from prometheus_client import generate_latest

from core.metrics import Metrics
from runtime.logger import Logger
from runtime.pool import WorkerPool


def _pool() -> WorkerPool:
    return WorkerPool("http", lambda worker_id: None, 1,  # type: ignore[arg-type,return-value]
                      availability_timeout=1.0, event_timeout=None, max_waiting=1,
                      logger=Logger("test"))


def test_two_functions_share_one_registry_with_their_own_labels() -> None:
    async def scrape() -> str:
        root = Metrics("a", "default", "default-a")
        view = root.for_function("b", "ns2", "ns2-b")
        root.add_pool("http", "http", _pool())
        view.add_pool("http", "http", _pool())
        root.for_trigger("http", "http").rejected("no_worker")
        view.for_trigger("http", "http").rejected("no_worker")
        return generate_latest(root.registry).decode()

    text = asyncio.run(scrape())
    handled = [line for line in text.splitlines()
               if line.startswith("nuclio_processor_handled_events_total{")
               and 'result="success"' in line]
    assert len(handled) == 2
    assert any('function="a"' in line and 'instance="default-a"' in line for line in handled)
    assert any('function="b"' in line and 'namespace="ns2"' in line and
               'instance="ns2-b"' in line for line in handled)
    assert text.count("# TYPE nuclio_processor_handled_events_total counter") == 1
    assert text.count('nuclio_processor_rejected_events_total{function="b"') == 1


def test_state_set_lazily_through_a_view_is_shared() -> None:
    root = Metrics("a")
    first, second = root.for_function("b", "default", "x"), root.for_function("c", "default", "y")
    first.lazily_made = ["collector"]  # type: ignore[attr-defined]
    assert root.lazily_made is second.lazily_made  # type: ignore[attr-defined]
    assert (first.function_name, second.function_name, root.function_name) == ("b", "c", "a")
    assert first.registry is root.registry
