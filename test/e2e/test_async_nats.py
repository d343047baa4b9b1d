"""Async invocation on NATS JetStream: replicas share one queue through a real
``nats-server -js``; each call runs once, survives a replica's kill -9 and a
nats-server restart, and NATS being down at start keeps the processor up."""

from __future__ import annotations

import collections
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from test.async_support import CallbackReceiver, async_config, wait_until
from test.brokers import NatsServer
from test.support import free_port


@pytest.fixture
def nats_server(tmp_path: Path):
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


def _config(port: int, nats_url: str, tag: str, runs: Path, *, sleep: str = "0.02",
            ack_wait: str = "2s", workers: int = 2) -> dict[str, Any]:
    return async_config("async_fns:slow", port, "/unused", workers=workers, backend="nats",
                        maxInflight=workers, nats={"url": nats_url, "ackWait": ack_wait},
                        env={"ASYNC_RUNS": str(runs), "ASYNC_TAG": tag, "ASYNC_SLEEP": sleep})


def _post(ports: list[int], n: int, callback: str) -> list[str]:
    session = requests.Session()

    def one(i: int) -> str:
        r = session.post(f"http://127.0.0.1:{ports[i % len(ports)]}/async-function/pi",
                         data=str(i), headers={"X-Callback-Url": callback}, timeout=10)
        assert r.status_code == 202, r.text
        return r.headers["X-Call-Id"]

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, range(n)))


def _runs(path: Path) -> list[tuple[str, str]]:
    if not path.exists():
        return []
    return [tuple(line.split()) for line in path.read_text().splitlines() if line.strip()]


def test_three_replicas_run_each_call_once(start_processor, nats_server, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    receiver = CallbackReceiver().start()
    try:
        ports = [free_port() for _ in range(3)]
        for i, port in enumerate(ports):
            start_processor(_config(port, nats_server.url, f"r{i}", runs))
        ids = _post(ports, 600, receiver.url)
        wait_until(lambda: set(receiver.ids()) >= set(ids), timeout=90,
                   what="600 callbacks")
        executions = collections.Counter(call_id for call_id, _ in _runs(runs))
        assert set(executions) == set(ids) and set(executions.values()) == {1}
        per_replica = collections.Counter(tag for _, tag in _runs(runs))
        assert len(per_replica) == 3 and min(per_replica.values()) >= 60, per_replica
        assert len(receiver.ids()) == 600
        # Any replica answers a status lookup.
        status = requests.get(f"http://127.0.0.1:{ports[2]}/async-function/_calls/{ids[0]}",
                              timeout=5).json()
        assert status["state"] == "succeeded"
    finally:
        receiver.close()


def test_killed_replica_calls_are_completed_by_the_others(start_processor, nats_server,
                                                          tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    receiver = CallbackReceiver().start()
    try:
        ports = [free_port() for _ in range(3)]
        procs = [start_processor(_config(port, nats_server.url, f"r{i}", runs, sleep="0.05",
                                         ack_wait="1s"))
                 for i, port in enumerate(ports)]
        ids = _post(ports, 200, receiver.url)
        wait_until(lambda: sum(1 for _, t in _runs(runs) if t == "r0") >= 5, what="r0 working")
        procs[0].proc.send_signal(signal.SIGKILL)
        procs[0].proc.wait(10)
        wait_until(lambda: set(receiver.ids()) >= set(ids), timeout=90, what="every callback")
        executions = collections.Counter(call_id for call_id, _ in _runs(runs))
        assert set(executions) == set(ids)
        assert sum(n - 1 for n in executions.values()) <= 2  # r0's in-flight calls at most
    finally:
        receiver.close()


def test_handler_slower_than_ack_wait_runs_once(start_processor, nats_server,
                                                tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    receiver = CallbackReceiver().start()
    try:
        ports = [free_port(), free_port()]
        for i, port in enumerate(ports):
            start_processor(_config(port, nats_server.url, f"r{i}", runs, sleep="3",
                                    ack_wait="1s", workers=1))
        ids = _post(ports, 2, receiver.url)
        wait_until(lambda: set(receiver.ids()) >= set(ids), timeout=30, what="both callbacks")
        time.sleep(1.5)  # a redelivery would have started by now
        assert sorted(c for c, _ in _runs(runs)) == sorted(ids)
    finally:
        receiver.close()


def test_nats_restart_mid_run_loses_nothing(start_processor, nats_server,
                                            tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    receiver = CallbackReceiver().start()
    try:
        port = free_port()
        start_processor(_config(port, nats_server.url, "r0", runs, sleep="0.05"))
        ids = _post([port], 100, receiver.url)
        wait_until(lambda: len(_runs(runs)) >= 10, what="some runs")
        nats_server.stop()
        time.sleep(1.0)
        nats_server.start()
        wait_until(lambda: set(receiver.ids()) >= set(ids), timeout=90, what="every callback")
        assert {c for c, _ in _runs(runs)} == set(ids)
    finally:
        receiver.close()


def test_nats_down_at_start_then_back(start_processor, tmp_path: Path) -> None:
    runs = tmp_path / "runs.txt"
    server = NatsServer(tmp_path / "nats")  # not started yet
    receiver = CallbackReceiver().start()
    try:
        port = free_port()
        proc = start_processor(_config(port, server.url, "r0", runs))
        def why() -> dict[str, Any]:
            ready = requests.get(f"http://127.0.0.1:{proc.health_port}/ready", timeout=5)
            assert ready.status_code == 200  # sync traffic is served meanwhile
            return dict(ready.json()["triggers"]["http"]["async"])

        state = wait_until(lambda: (s := why()).get("reason", "").startswith("cannot use NATS")
                           and s, what="/ready saying why")
        assert state["state"] == "unavailable" and server.url in state["reason"]
        url = f"http://127.0.0.1:{port}/async-function/pi"
        r = requests.post(url, data="x", timeout=5)
        assert r.status_code == 503 and "unavailable" in r.json()["error"]
        assert requests.post(f"http://127.0.0.1:{port}/sync", timeout=5).status_code == 200
        server.start()
        wait_until(lambda: requests.post(url, data="x", headers={"X-Callback-Url": receiver.url},
                                         timeout=5).status_code == 202, timeout=20,
                   what="async accepted once NATS is up")
        wait_until(receiver.calls, what="the callback")
        assert proc.metric("nuclio_processor_async_rejected_total", reason="unavailable") >= 1
    finally:
        receiver.close()
        server.stop()


def test_dead_letters_bounded_listed_and_requeued(start_processor, nats_server,
                                                  tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    port = free_port()
    start_processor(async_config(
        "async_fns:fixable", port, "/unused", backend="nats", nats={"url": nats_server.url},
        retry={"maxAttempts": 1}, retention={"maxDeadLetters": 2},
        env={"ASYNC_RUNS": str(tmp_path / "runs.txt"), "FIXED_FLAG": str(flag)}))
    base = f"http://127.0.0.1:{port}/async-function"
    ids = []
    for i in range(4):
        r = requests.post(f"{base}/pi", data=str(i), headers={"X-Call-Id": f"d{i}"}, timeout=5)
        assert r.status_code == 202
        ids.append(r.headers["X-Call-Id"])
        wait_until(lambda i=i: requests.get(f"{base}/_calls/d{i}", timeout=5).json()["state"]
                   == "dead", what=f"d{i} dead")
    dead = [d["call_id"] for d in requests.get(f"{base}/_dead/pi", timeout=5).json()["dead"]]
    assert dead == ["d2", "d3"]  # bounded: the oldest went first
    flag.write_text("")
    assert requests.post(f"{base}/_calls/d3/requeue", timeout=5).status_code == 202
    wait_until(lambda: requests.get(f"{base}/_calls/d3", timeout=5).json()["state"]
               == "succeeded", what="d3 succeeded after the fix")
    assert [d["call_id"] for d in
            requests.get(f"{base}/_dead/pi", timeout=5).json()["dead"]] == ["d2"]
