"""Async invocation, what must survive: kill -9, SIGTERM, failing handlers, a callback
receiver that is away. Retry delays are shortened through the config."""

from __future__ import annotations

import collections
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from test.async_support import CallbackReceiver, async_config, wait_until
from test.support import free_port


def _post_many(url: str, n: int, headers: dict[str, str]) -> list[str]:
    session = requests.Session()

    def one(i: int) -> str:
        r = session.post(url, data=str(i), headers=headers, timeout=10)
        assert r.status_code == 202, r.text
        return r.headers["X-Call-Id"]

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def test_kill_9_then_restart_completes_every_call(start_processor, tmp_path: Path) -> None:
    port, workers = free_port(), 2
    runs = tmp_path / "runs.txt"
    receiver = CallbackReceiver().start()
    try:
        # Default maxInflight (half the pool): duplicates are bounded by 2 x maxInflight
        # (running, or finished with the outcome not yet committed) <= numWorkers.
        config = async_config("async_fns:slow", port, str(tmp_path / "store"), workers=workers,
                              env={"ASYNC_RUNS": str(runs), "ASYNC_SLEEP": "0.03"})
        proc = start_processor(config)
        ids = _post_many(f"http://127.0.0.1:{port}/async-function/pi", 200,
                         {"X-Callback-Url": receiver.url})
        wait_until(lambda: len(receiver.calls()) >= 20, what="some callbacks")
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait(10)
        done_before = len(set(receiver.ids()))
        assert done_before < 200, "the kill came too late to prove anything"
        start_processor(config)
        wait_until(lambda: set(receiver.ids()) >= set(ids), timeout=60,
                   what="every callback after the restart")
        executions = collections.Counter(runs.read_text().split())
        assert set(executions) == set(ids)
        repeated = [i for i, n in executions.items() if n > 1]
        assert len(repeated) <= workers, repeated  # only those running at the kill
        assert all(n <= 2 for n in executions.values())
        callbacks = collections.Counter(receiver.ids())
        # At least once: a callback in flight at the kill may come again.
        assert sum(callbacks.values()) - len(callbacks) <= workers + 16
        assert all(h["X-Function-Status"] == "200" for h, _ in receiver.calls())
    finally:
        receiver.close()


def test_retries_then_one_callback_with_retry_count(start_processor, tmp_path: Path) -> None:
    port = free_port()
    runs = tmp_path / "runs.txt"
    receiver = CallbackReceiver().start()
    try:
        proc = start_processor(async_config(
            "async_fns:flaky", port, str(tmp_path / "store"),
            env={"ASYNC_RUNS": str(runs), "FAIL_TIMES": "2"}))
        r = requests.post(f"http://127.0.0.1:{port}/async-function/pi", data="x",
                          headers={"X-Callback-Url": receiver.url}, timeout=5)
        call_id = r.headers["X-Call-Id"]
        wait_until(receiver.calls, what="the callback")
        time.sleep(0.5)  # no second callback follows
        (headers, body), = receiver.calls()
        assert headers["X-Retry"] == "2" and headers["X-Function-Status"] == "200"
        assert body == b"ok after 3"
        assert runs.read_text().split() == [call_id] * 3
        assert proc.metric("nuclio_processor_async_calls_total", outcome="retried") == 2
    finally:
        receiver.close()


def test_dead_letter_listed_requeued_then_fixed(start_processor, tmp_path: Path) -> None:
    port = free_port()
    flag = tmp_path / "fixed"
    receiver = CallbackReceiver().start()
    try:
        proc = start_processor(async_config(
            "async_fns:fixable", port, str(tmp_path / "store"), retry={"maxAttempts": 3},
            env={"ASYNC_RUNS": str(tmp_path / "runs.txt"), "FIXED_FLAG": str(flag)}))
        base = f"http://127.0.0.1:{port}/async-function"
        call_id = requests.post(f"{base}/pi", data="x", headers={"X-Callback-Url": receiver.url},
                                timeout=5).headers["X-Call-Id"]
        wait_until(receiver.calls, what="the dead call's callback")
        headers, body = receiver.calls()[0]
        assert headers["X-Function-Status"] == "500" and headers["X-Retry"] == "2"
        assert headers["X-Retry-Max"] == "2" and body == b"broken"
        status = requests.get(f"{base}/_calls/{call_id}", timeout=5).json()
        assert status["state"] == "dead" and status["attempts"] == 3
        dead = requests.get(f"{base}/_dead/pi", timeout=5).json()["dead"]
        assert [d["call_id"] for d in dead] == [call_id]
        assert proc.metric("nuclio_processor_async_calls_total", outcome="dead") == 1
        flag.write_text("")
        r = requests.post(f"{base}/_calls/{call_id}/requeue", timeout=5)
        assert r.status_code == 202
        wait_until(lambda: len(receiver.calls()) == 2, what="the second callback")
        headers, body = receiver.calls()[1]
        assert headers["X-Function-Status"] == "200" and body == b"fixed"
        assert requests.get(f"{base}/_calls/{call_id}", timeout=5).json()["state"] == "succeeded"
        assert requests.get(f"{base}/_dead/pi", timeout=5).json()["dead"] == []
        assert requests.post(f"{base}/_calls/{call_id}/requeue", timeout=5).status_code == 409
    finally:
        receiver.close()


def test_callback_receiver_down_then_up(start_processor, tmp_path: Path) -> None:
    port = free_port()
    receiver = CallbackReceiver()  # not started: connection refused
    try:
        start_processor(async_config("async_fns:slow", port, str(tmp_path / "store")))
        base = f"http://127.0.0.1:{port}/async-function"
        call_id = requests.post(f"{base}/pi", data="x", headers={"X-Callback-Url": receiver.url},
                                timeout=5).headers["X-Call-Id"]

        def tried_twice() -> bool:
            cb = requests.get(f"{base}/_calls/{call_id}", timeout=5).json()["callback"]
            return cb["state"] == "pending" and cb["attempts"] >= 2

        wait_until(tried_twice, what="failed callback attempts")
        receiver.start()
        wait_until(receiver.calls, what="the callback once the receiver is up")
        time.sleep(0.5)
        assert receiver.ids() == [call_id]
        cb = requests.get(f"{base}/_calls/{call_id}", timeout=5).json()["callback"]
        assert cb["state"] == "delivered" and cb["last_status"] == 200
    finally:
        receiver.close()


def test_sigterm_leaves_queued_calls_for_the_next_start(start_processor, tmp_path: Path) -> None:
    port = free_port()
    runs = tmp_path / "runs.txt"
    receiver = CallbackReceiver().start()
    try:
        config = async_config("async_fns:slow", port, str(tmp_path / "store"), workers=1,
                              env={"ASYNC_RUNS": str(runs), "ASYNC_SLEEP": "0.3"})
        proc = start_processor(config)
        ids = _post_many(f"http://127.0.0.1:{port}/async-function/pi", 10,
                         {"X-Callback-Url": receiver.url})
        wait_until(runs.exists, what="the first run")
        assert proc.stop() == 0
        assert "Processor stopped" in proc.logs
        assert len(set(receiver.ids())) < 10
        start_processor(config)
        wait_until(lambda: set(receiver.ids()) >= set(ids), timeout=30,
                   what="every callback after the restart")
        executions = collections.Counter(runs.read_text().split())
        assert set(executions) == set(ids) and max(executions.values()) == 1
    finally:
        receiver.close()
