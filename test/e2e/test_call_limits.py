"""Calls between functions cannot take a processor down: a loop ends in 508, a call that
needs a worker of its own exhausted pool gets 503 after the availability timeout, and the
blocking call from an async handler is a clear error that never blocks the event loop."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path

import requests

from test.fusion_support import Fused, fn, fusion_platform, port_of, start_fused, write_functions

__all__ = ["start_fused"]


def test_a_function_calling_itself_ends_in_508(tmp_path: Path,
                                               start_fused: Callable[..., Fused]) -> None:
    # Thread workers: enough for every level of the chain (16 by default) to hold one.
    looping = fn("looping", "fusion_fns:self_caller", kind="thread", workers=20)
    write_functions(tmp_path / "fns", [looping, fn("other", "hello:handler")])
    start_fused([tmp_path / "fns"], fusion_platform(tmp_path))
    response = requests.get(f"http://127.0.0.1:{port_of(looping)}/looping", timeout=30)
    assert response.status_code == 508
    assert "deeper than 16" in response.json()["error"]


def test_the_depth_limit_is_configurable(tmp_path: Path,
                                         start_fused: Callable[..., Fused]) -> None:
    looping = fn("looping", "fusion_fns:self_caller", kind="process", workers=3)
    write_functions(tmp_path / "fns", [looping])
    processor = start_fused([tmp_path / "fns"], fusion_platform(tmp_path, max_depth=3))
    response = requests.get(f"http://127.0.0.1:{port_of(looping)}/looping", timeout=30)
    assert response.status_code == 508, processor.logs[-3000:]
    depths = [line for line in processor.logs.splitlines() if '"Calling function"' in line]
    assert len(depths) == 2  # depth 1 calls depth 2, which calls depth 3; the next is refused


def test_waiting_for_a_worker_of_its_own_exhausted_pool_is_503_not_a_deadlock(
        tmp_path: Path, start_fused: Callable[..., Fused]) -> None:
    solo = fn("solo", "fusion_fns:caller", kind="process", workers=1, availability_ms=500)
    write_functions(tmp_path / "fns", [solo])
    start_fused([tmp_path / "fns"], fusion_platform(tmp_path))
    url = f"http://127.0.0.1:{port_of(solo)}/"
    started = time.monotonic()
    described = requests.post(url, json={"target": "solo", "body": {"target": "solo"}},
                              timeout=30).json()
    assert described["status"] == 503
    assert 0.4 < time.monotonic() - started < 10
    # The one worker is free again: the processor serves on.
    again = requests.post(url, json={"target": "nobody"}, timeout=10).json()
    assert again["status"] == 404


def test_the_blocking_call_from_an_async_handler_is_a_clear_error(
        tmp_path: Path, start_fused: Callable[..., Fused]) -> None:
    wrong = fn("wrong", "fusion_fns:async_blocking_caller", kind="async", workers=4,
               expose_tracebacks=True)
    slow = fn("slow", "fusion_fns:slow", kind="thread", workers=4)
    text = fn("text", "fusion_fns:async_echo", kind="async", workers=4)
    write_functions(tmp_path / "fns", [wrong, slow, text])
    start_fused([tmp_path / "fns"], fusion_platform(tmp_path))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        errors = [pool.submit(requests.post, f"http://127.0.0.1:{port_of(wrong)}/",
                              json={"target": "slow"}, timeout=10) for _ in range(4)]
        others = [pool.submit(requests.get, f"http://127.0.0.1:{port_of(text)}/", timeout=10)
                  for _ in range(8)]
        for future in errors:
            response = future.result()
            assert response.status_code == 500
            assert "call_function_async" in response.json()["exception"]
        assert all(f.result().status_code == 200 for f in others)
