"""``spec.runtimeAttributes.eventsPerWorker``: a process or thread worker holds its next
event while it runs the current one. Seen from outside: events still run one at a time
per worker and in order, the least loaded worker gets the next event, and a crash or a
timeout still costs only the event that was running (the one queued behind it runs
on the replacement)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from test.conftest import free_port, function_config
from test.fusion_support import Fused, fn, fusion_platform, port_of, start_fused, write_functions

__all__ = ["start_fused"]


def _start(start_processor: Any, workers: int, depth: int, kind: str = "process",
           **extra: Any) -> tuple[Any, str]:
    """No waiting for a worker (availability timeout 0): an event that is not handed to
    a worker at once gets a 503, so a 200 for a queued event shows it was in a worker."""
    port = free_port()
    proc = start_processor(function_config(
        "faults:handler", port=port, workers=workers,
        http_extra={"workerAvailabilityTimeoutMilliseconds": 0},
        runtime_attributes={"workerKind": kind, "eventsPerWorker": depth}, **extra))
    return proc, f"http://127.0.0.1:{port}"


def _get(url: str) -> tuple[requests.Response, float]:
    response = requests.get(url, timeout=30)
    return response, time.monotonic()


def _behind(pool: ThreadPoolExecutor, base: str, first: str, second: str
            ) -> tuple[Future[tuple[requests.Response, float]],
                       Future[tuple[requests.Response, float]]]:
    """``first`` starts in the worker; 0.3 s later ``second`` is sent, to queue behind it."""
    running = pool.submit(_get, base + first)
    time.sleep(0.3)
    return running, pool.submit(_get, base + second)


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_queued_event_runs_after_the_current_one_on_the_same_worker(start_processor, kind):
    proc, base = _start(start_processor, workers=1, depth=2, kind=kind)
    pid = requests.get(base + "/ok", timeout=10).json()["pid"]
    with ThreadPoolExecutor(2) as pool:
        sent = time.monotonic() + 0.3
        slow, quick = _behind(pool, base, "/sleep?s=1", "/ok")
        time.sleep(0.2)
        # The one worker holds two events: a third is refused at once, as without
        # pipelining a second would be.
        refused = requests.get(base + "/ok", timeout=10)
        (slow_r, slow_done), (quick_r, quick_done) = slow.result(), quick.result()
    assert refused.status_code == 503
    assert slow_r.status_code == 200 and slow_r.text == "slept"
    assert quick_r.status_code == 200 and quick_r.json()["pid"] == pid
    # It waited in the worker behind the sleeping event, not beside it.
    assert quick_done >= slow_done - 0.05 and quick_done - sent >= 0.5
    assert proc.metric("nuclio_processor_handled_events_total", result="success") == 3


def test_next_event_goes_to_the_least_loaded_worker(start_processor):
    _, base = _start(start_processor, workers=2, depth=2)
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(requests.get, base + "/sleep?s=1", timeout=30)
        time.sleep(0.3)
        # The first worker has room for one more, but the second one is idle.
        started = time.monotonic()
        r = requests.get(base + "/ok", timeout=30)
        assert r.status_code == 200 and time.monotonic() - started < 0.5
        assert first.result().status_code == 200


def test_crash_costs_only_the_running_event(start_processor):
    proc, base = _start(start_processor, workers=1, depth=2)
    first_pid = requests.get(base + "/ok", timeout=10).json()["pid"]
    with ThreadPoolExecutor(2) as pool:
        dying, queued = _behind(pool, base, "/slowexit?s=1", "/ok")
        (dying_r, _), (queued_r, _) = dying.result(), queued.result()
    assert dying_r.status_code == 500 and "worker process exited" in dying_r.json()["error"]
    # The queued event never started on the dead worker: it ran on the replacement.
    assert queued_r.status_code == 200, queued_r.text
    assert queued_r.json()["pid"] != first_pid
    assert proc.metric("nuclio_processor_worker_crashes_total") == 1
    assert proc.metric("nuclio_processor_handled_events_total", result="failure") == 1
    assert proc.metric("nuclio_processor_handled_events_total", result="success") == 2


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_timeout_counts_from_when_the_event_starts(start_processor, kind):
    proc, base = _start(start_processor, workers=1, depth=2, kind=kind, event_timeout="2s")
    with ThreadPoolExecutor(3) as pool:
        # 1.5 s each, back to back in one worker: the second must not time out although
        # it was sent 3 s before it finishes.
        first = pool.submit(_get, base + "/sleep?s=1.5")
        time.sleep(0.2)
        second = pool.submit(_get, base + "/sleep?s=1.5")
        assert first.result()[0].status_code == 200
        assert second.result()[0].status_code == 200
        # A stuck event times out; the event queued behind it runs on the replacement.
        stuck, queued = _behind(pool, base, "/sleep?s=10", "/ok")
        assert stuck.result()[0].status_code == 408
        assert queued.result()[0].status_code == 200
    assert proc.metric("nuclio_processor_handled_events_total", result="failure") == 1


def test_call_function_while_the_next_event_waits_in_the_worker(
        tmp_path: Path, start_fused: Callable[..., Fused]) -> None:
    """The worker reads its call's answer from the same socket that brings its next
    event: the event that arrives first must wait for the main loop, not be taken for
    the answer."""
    caller = fn("caller", "fusion_fns:caller", kind="process", workers=1, availability_ms=0)
    caller["spec"]["runtimeAttributes"]["eventsPerWorker"] = 2
    callee = fn("slow", "fusion_fns:slow", kind="thread", workers=2)
    directory = write_functions(tmp_path / "fns", [caller, callee])
    start_fused([directory], fusion_platform(tmp_path)).wait_ready()
    url = f"http://127.0.0.1:{port_of(caller)}/"
    ask = {"target": "slow", "path": "/?seconds=1", "body": "x"}
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(requests.post, url, json=ask, timeout=30)
        time.sleep(0.3)  # the first is inside its call now; the second queues behind it
        second = pool.submit(requests.post, url, json=ask, timeout=30)
        answers = [first.result(), second.result()]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        described = answer.json()
        assert described["status"] == 200, described
        assert base64.b64decode(described["body"]["base64"]) == b"late"
