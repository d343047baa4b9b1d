"""A failing handler costs one event, never the processor."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from test.conftest import free_port, function_config


def _base(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def _healthy(base: str, times: int = 5) -> None:
    for _ in range(times):
        r = requests.get(base + "/ok", timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["ok"] is True


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_exception_is_a_500_without_traceback(start_processor, kind):
    port = free_port()
    proc = start_processor(function_config("faults:handler", port=port,
                                           runtime_attributes={"workerKind": kind}))
    r = requests.get(_base(port) + "/raise", timeout=10)
    assert r.status_code == 500
    body = r.json()
    assert body["error"] == "the function raised an exception"
    assert "secret detail" not in r.text and "Traceback" not in r.text
    assert "boom: secret detail" in proc.logs  # the traceback goes to the log instead
    r = requests.get(_base(port) + "/sysexit", timeout=10)
    assert r.status_code == 500
    _healthy(_base(port))
    assert proc.metric("nuclio_processor_handled_events_total", result="failure") == 2


def test_exposed_traceback_when_asked(start_processor):
    port = free_port()
    start_processor(function_config("faults:handler", port=port,
                                    runtime_attributes={"exposeTracebacks": True}))
    body = requests.get(_base(port) + "/raise", timeout=10).json()
    assert body["exception"] == "ValueError: boom: secret detail"
    assert "Traceback" in body["traceback"]


@pytest.mark.parametrize("path", ["/exit", "/sigkill", "/segfault"])
def test_dying_process_worker_is_replaced(start_processor, path):
    port = free_port()
    proc = start_processor(function_config("faults:handler", port=port, workers=1,
                                           runtime_attributes={"workerKind": "process"}))
    base = _base(port)
    first_pid = requests.get(base + "/ok", timeout=10).json()["pid"]
    r = requests.get(base + path, timeout=10)
    assert r.status_code == 500
    assert "worker process exited" in r.json()["error"]
    # The replacement serves the next requests (it may need a moment to start).
    r = requests.get(base + "/ok", timeout=15)
    assert r.status_code == 200
    assert r.json()["pid"] != first_pid
    _healthy(base)
    assert proc.metric("nuclio_processor_worker_restarts_total") == 1
    assert proc.metric("nuclio_processor_worker_crashes_total") == 1
    assert proc.proc.poll() is None


def test_idle_worker_killed_from_outside_is_replaced(start_processor):
    port = free_port()
    proc = start_processor(function_config("faults:handler", port=port, workers=1))
    base = _base(port)
    pid = requests.get(base + "/ok", timeout=10).json()["pid"]
    os.kill(pid, signal.SIGKILL)  # e.g. the OOM killer
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = requests.get(base + "/ok", timeout=10)
        if r.status_code == 200 and r.json()["pid"] != pid:
            break
        time.sleep(0.05)
    else:
        pytest.fail("worker was not replaced")
    assert proc.metric("nuclio_processor_worker_restarts_total") == 1


@pytest.mark.parametrize(("kind", "handler"), [("process", "handler"), ("thread", "handler"),
                                               ("async", "handler_async")])
def test_event_timeout_is_408_and_worker_recovers(start_processor, kind, handler):
    port = free_port()
    proc = start_processor(function_config(f"faults:{handler}", port=port, workers=1,
                                           event_timeout="500ms",
                                           runtime_attributes={"workerKind": kind}))
    base = _base(port)
    started = time.monotonic()
    r = requests.get(base + "/sleep?s=5", timeout=10)
    elapsed = time.monotonic() - started
    assert r.status_code == 408
    assert "timed out after 0.5s" in r.json()["error"]
    assert 0.45 <= elapsed < 2.0  # precise: neither early nor waiting for the handler
    r = requests.get(base + "/ok", timeout=10)
    assert r.status_code == 200
    assert proc.metric("nuclio_processor_event_timeouts_total") == 1


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_blocking_handler_does_not_block_others(start_processor, kind):
    port = free_port()
    proc = start_processor(function_config("faults:handler", port=port, workers=2,
                                           runtime_attributes={"workerKind": kind}))
    base = _base(port)
    result: dict[str, int] = {}

    def slow():
        result["slow"] = requests.get(base + "/sleep?s=2", timeout=10).status_code

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    started = time.monotonic()
    _healthy(base, 10)  # the other worker keeps serving
    ready = requests.get(proc.url(proc.health_port, "/ready"), timeout=5)
    assert ready.status_code == 200  # the event loop is not blocked
    assert time.monotonic() - started < 1.5
    thread.join()
    assert result["slow"] == 200


def _call_while_busy(start_processor, availability_ms: int):
    """One worker kept busy by a 2 s event; returns (processor, base, response, seconds)
    for a second request that has to wait for it."""
    port = free_port()
    cfg = function_config("faults:handler", port=port, workers=1,
                          http_extra={"workerAvailabilityTimeoutMilliseconds": availability_ms})
    proc = start_processor(cfg)
    base = _base(port)
    blocker = threading.Thread(target=lambda: requests.get(base + "/sleep?s=2", timeout=10))
    blocker.start()
    time.sleep(0.3)
    started = time.monotonic()
    response = requests.get(base + "/ok", timeout=10)
    elapsed = time.monotonic() - started
    blocker.join()
    return proc, base, response, elapsed


def test_overload_gets_503_after_availability_timeout(start_processor):
    proc, base, r, elapsed = _call_while_busy(start_processor, 300)
    assert r.status_code == 503
    assert "within 0.3s" in r.json()["error"]
    assert 0.25 <= elapsed < 1.5
    assert proc.metric("nuclio_processor_worker_allocation_total", result="error_timeout") == 1
    _healthy(base)


def test_zero_availability_timeout_fails_at_once(start_processor):
    _, _, r, elapsed = _call_while_busy(start_processor, 0)
    assert r.status_code == 503
    assert elapsed < 0.25


def test_waiting_event_gets_the_next_free_worker(start_processor):
    port = free_port()
    proc = start_processor(function_config("faults:handler", port=port, workers=1))
    base = _base(port)
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda _: requests.get(base + "/sleep?s=0.2", timeout=10)
                              .status_code, range(4)))
    assert codes == [200] * 4
    assert proc.metric("nuclio_processor_worker_allocation_total",
                       result="success_after_wait") >= 1


@pytest.mark.parametrize("kind", ["process", "thread"])
def test_sigterm_during_burst_answers_every_accepted_request(start_processor, tmp_path, kind):
    port = free_port()
    marker = tmp_path / "terminated.txt"
    proc = start_processor(function_config(
        "lifecycle:handler", port=port, workers=4,
        env=[{"name": "TERMINATION_FILE", "value": str(marker)}],
        runtime_attributes={"workerKind": kind}))
    base = _base(port)

    def call(i):
        return requests.get(f"{base}/?s=0.6&n={i}", timeout=15)

    with ThreadPoolExecutor(12) as pool:
        futures = [pool.submit(call, i) for i in range(12)]
        time.sleep(0.3)  # all 12 accepted: 4 running, 8 waiting for a worker
        proc.proc.send_signal(signal.SIGTERM)
        responses = [f.result() for f in futures]
    assert [r.status_code for r in responses] == [200] * 12
    assert [r.text for r in responses] == [str(i) for i in range(12)]
    assert proc.proc.wait(15) == 0
    assert sorted(marker.read_text().split("\n")[:-1]) == [f"terminated {i}" for i in range(4)]
    with pytest.raises(requests.ConnectionError):
        requests.get(base + "/", timeout=2)


def test_failing_init_context_exits_1(start_processor):
    port = free_port()
    proc = start_processor(function_config("init_fails:handler", port=port), ready=False)
    assert proc.proc.wait(20) == 1
    assert "cannot load the model" in proc.logs


def test_live_but_not_ready_during_init_and_sigterm_still_stops(start_processor):
    port = free_port()
    proc = start_processor(function_config("slow_init:handler", port=port), ready=False)
    deadline = time.monotonic() + 15
    live = None
    while time.monotonic() < deadline:
        try:
            live = requests.get(proc.url(proc.health_port, "/live"), timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    assert live is not None and live.status_code == 200
    ready = requests.get(proc.url(proc.health_port, "/ready"), timeout=2)
    assert ready.status_code == 503 and ready.json()["ready"] is False
    with pytest.raises(requests.ConnectionError):  # the trigger is not listening yet
        requests.get(f"http://127.0.0.1:{port}/", timeout=1)
    started = time.monotonic()
    proc.proc.send_signal(signal.SIGTERM)
    assert proc.proc.wait(10) == 0
    assert time.monotonic() - started < 5


def test_bounded_wait_queue_drops_are_counted(start_processor):
    port = free_port()
    proc = start_processor(function_config("faults:handler", port=port, workers=1,
                                           runtime_attributes={"maxWaitingEvents": 1}))
    base = _base(port)
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(requests.get, base + "/sleep?s=1.5", timeout=10)
        time.sleep(0.3)
        waiting = pool.submit(requests.get, base + "/ok", timeout=10)
        time.sleep(0.3)
        started = time.monotonic()
        dropped = requests.get(base + "/ok", timeout=10)
        assert dropped.status_code == 503
        assert "too many events are waiting" in dropped.json()["error"]
        assert time.monotonic() - started < 0.5  # refused at once, not after the timeout
        assert running.result().status_code == 200
        assert waiting.result().status_code == 200
    assert proc.metric("nuclio_processor_worker_allocation_queue_full_total") == 1
    assert proc.metric("nuclio_processor_rejected_events_total", reason="no_worker") == 1
