"""Async invocation, the client's side: OpenFaaS's contract with curl, our additions
(status lookup, idempotency, cancellation, signed callbacks) and every refusal."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import requests
import yaml

from invocations.signing import verify
from test.async_support import CallbackReceiver, async_config, wait_until
from test.conftest import ROOT, run_config_once
from test.support import free_port

SECRET = "s3cret-for-tests"


def _curl(*args: str) -> tuple[int, dict[str, str], str]:
    out = subprocess.run(["curl", "-s", "-i", *args], capture_output=True, text=True,
                         timeout=10, check=True).stdout
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    lines = head.splitlines()
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:])}
    return status, headers, body


def test_curl_202_then_callback_with_every_header(start_processor, tmp_path: Path) -> None:
    port = free_port()
    receiver = CallbackReceiver().start()
    try:
        config = async_config("async_fns:echo", port, str(tmp_path / "store"),
                              env={"CB_SECRET": SECRET},
                              callback={"signingSecretEnv": "CB_SECRET"})
        proc = start_processor(config)
        status, headers, body = _curl("-d", "40", "-H", f"X-Callback-Url: {receiver.url}",
                                      f"http://127.0.0.1:{port}/async-function/pi/digits?n=5")
        assert status == 202, body
        call_id = headers["x-call-id"]
        assert re.fullmatch(r"[0-9a-f-]{36}", call_id)
        assert headers["location"] == f"/async-function/_calls/{call_id}"
        start_ns = int(headers["x-start-time"])
        assert json.loads(body) == {"call_id": call_id, "start_time": str(start_ns),
                                    "location": headers["location"]}
        wait_until(receiver.calls, what="the callback")
        (cb_headers, cb_body), = receiver.calls()
        assert cb_headers["X-Call-Id"] == call_id
        assert cb_headers["X-Function-Status"] == "200"
        assert cb_headers["X-Function-Name"] == "pi"
        assert re.fullmatch(r"\d+\.\d{6}", cb_headers["X-Duration-Seconds"])
        assert cb_headers["X-Start-Time"] == str(start_ns)
        assert cb_headers["X-Retry"] == "0"
        assert cb_headers["X-Retry-Max"] == "3"
        assert cb_headers["X-Handler"] == "echo"  # the function's own header
        assert cb_headers["Content-Type"] == "application/json"
        assert verify(SECRET.encode(), call_id, cb_body, cb_headers["X-Signature"])
        assert not verify(b"wrong", call_id, cb_body, cb_headers["X-Signature"])
        seen = json.loads(cb_body)
        assert seen["id"] == call_id and seen["call_id"] == call_id
        assert seen["path"] == "/digits" and seen["fields"] == {"n": "5"}
        assert seen["method"] == "POST" and seen["body"] == "40"
        assert seen["callback_url"] == receiver.url
        assert SECRET not in proc.logs
        state = requests.get(f"http://127.0.0.1:{port}{headers['location']}", timeout=5).json()
        assert state["state"] == "succeeded" and state["attempts"] == 1
        assert state["callback"]["state"] == "delivered"
        assert json.loads(state["response"]["body"])["id"] == call_id
        assert proc.metric("nuclio_processor_async_calls_total", outcome="succeeded") == 1
        assert proc.metric("nuclio_processor_async_callbacks_total", outcome="delivered") == 1
        ready = requests.get(f"http://127.0.0.1:{proc.health_port}/ready", timeout=5).json()
        assert ready["triggers"]["http"]["async"]["backend"] == "sqlite"
        assert ready["triggers"]["http"]["async"]["state"] == "ok"
    finally:
        receiver.close()


def test_prefer_respond_async_on_normal_path(start_processor, tmp_path: Path) -> None:
    port = free_port()
    receiver = CallbackReceiver().start()
    try:
        start_processor(async_config("async_fns:echo", port, str(tmp_path / "store")))
        status, headers, _ = _curl("-d", "x", "-H", "Prefer: respond-async",
                                   "-H", f"X-Callback-Url: {receiver.url}",
                                   "-H", "X-Call-Id: mine-1",
                                   f"http://127.0.0.1:{port}/plain/path?a=b")
        assert status == 202 and headers["x-call-id"] == "mine-1"
        wait_until(receiver.calls, what="the callback")
        seen = json.loads(receiver.calls()[0][1])
        assert seen["path"] == "/plain/path" and seen["fields"] == {"a": "b"}
        assert seen["id"] == "mine-1"
        # Without the header the same path is a plain sync call.
        sync = requests.post(f"http://127.0.0.1:{port}/plain/path", data="y", timeout=5)
        assert sync.status_code == 200 and sync.json()["body"] == "y"
    finally:
        receiver.close()


def test_refusals_are_counted_and_nothing_is_stored(start_processor, tmp_path: Path) -> None:
    port = free_port()
    config = async_config("async_fns:slow", port, str(tmp_path / "store"), workers=1,
                          maxQueued=2, env={"ASYNC_SLEEP": "2"})
    config["spec"]["triggers"]["http"]["attributes"]["maxRequestBodySize"] = 1000
    proc = start_processor(config)
    base = f"http://127.0.0.1:{port}/async-function"
    r = requests.post(f"{base}/nope", data="1", timeout=5)
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = requests.get(f"{base}/pi", timeout=5)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    r = requests.post(f"{base}/pi", data="1", headers={"X-Callback-Url": "ftp://x/y"}, timeout=5)
    assert r.status_code == 400
    r = requests.post(f"{base}/pi", data="1", headers={"X-Callback-Url": "not a url"}, timeout=5)
    assert r.status_code == 400
    r = requests.post(f"{base}/pi", data="1", headers={"X-Call-Id": "_bad id"}, timeout=5)
    assert r.status_code == 400
    r = requests.post(f"{base}/pi", data=b"x" * 2000, headers={"X-Call-Id": "big"}, timeout=5)
    assert r.status_code == 413
    assert requests.get(f"{base}/_calls/big", timeout=5).status_code == 404
    assert requests.post(f"{base}/pi", data="1", timeout=5).status_code == 202
    assert requests.post(f"{base}/pi", data="2", timeout=5).status_code == 202
    r = requests.post(f"{base}/pi", data="3", timeout=5)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    for reason, n in (("bad_callback_url", 2), ("bad_call_id", 1), ("body_too_large", 1),
                      ("queue_full", 1), ("unknown_function", 1), ("method_not_allowed", 1)):
        assert proc.metric("nuclio_processor_async_rejected_total", reason=reason) == n, reason
    assert proc.metric("nuclio_processor_async_calls_total", outcome="accepted") == 2
    assert proc.metric("nuclio_processor_async_queue_depth") == 2


def test_idempotency_same_id_runs_once(start_processor, tmp_path: Path) -> None:
    port = free_port()
    runs = tmp_path / "runs.txt"
    start_processor(async_config("async_fns:slow", port, str(tmp_path / "store"),
                                 env={"ASYNC_RUNS": str(runs)}))
    url = f"http://127.0.0.1:{port}/async-function/pi"
    first = requests.post(url, data="same", headers={"X-Call-Id": "once"}, timeout=5)
    again = requests.post(url, data="same", headers={"X-Call-Id": "once"}, timeout=5)
    assert first.status_code == again.status_code == 202
    assert first.headers["X-Start-Time"] == again.headers["X-Start-Time"]
    other = requests.post(url, data="different", headers={"X-Call-Id": "once"}, timeout=5)
    assert other.status_code == 409
    status = f"http://127.0.0.1:{port}/async-function/_calls/once"
    wait_until(lambda: requests.get(status, timeout=5).json()["state"] == "succeeded")
    later = requests.post(url, data="same", headers={"X-Call-Id": "once"}, timeout=5)
    assert later.status_code == 202
    wait_until(lambda: runs.exists(), what="a run")
    assert runs.read_text().split() == ["once"]


def test_status_states_and_cancellation(start_processor, tmp_path: Path) -> None:
    port = free_port()
    runs = tmp_path / "runs.txt"
    start_processor(async_config("async_fns:echo", port, str(tmp_path / "store"), workers=2,
                                 maxInflight=1, env={"ASYNC_RUNS": str(runs)}))
    base = f"http://127.0.0.1:{port}/async-function"

    def state(call_id: str) -> str:
        return str(requests.get(f"{base}/_calls/{call_id}", timeout=5).json()["state"])

    slow = {"X-Sleep": "1.5"}
    requests.post(f"{base}/pi", headers={**slow, "X-Call-Id": "a"}, timeout=5).raise_for_status()
    requests.post(f"{base}/pi", headers={**slow, "X-Call-Id": "b"}, timeout=5).raise_for_status()
    wait_until(lambda: state("a") == "running", what="a running")
    assert state("b") == "queued"
    r = requests.delete(f"{base}/b", timeout=5)  # OpenFaaS Pro's cancel route
    assert r.status_code == 202 and r.json()["state"] == "cancelled"
    assert state("b") == "cancelled"
    assert requests.delete(f"{base}/b", timeout=5).status_code == 409
    assert requests.delete(f"{base}/unknown-call", timeout=5).status_code == 404
    assert requests.get(f"{base}/_calls/unknown-call", timeout=5).status_code == 404
    # A running call is not interrupted.
    assert requests.delete(f"{base}/_calls/a", timeout=5).json()["state"] == "running"
    wait_until(lambda: state("a") == "succeeded", what="a succeeded")
    body = requests.get(f"{base}/_calls/a", timeout=5).json()
    assert body["response"]["status"] == 200 and body["finished_at"] >= body["started_at"]
    assert runs.read_text().split() == ["a"]


def test_store_directory_not_writable_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    config = async_config("async_fns:echo", free_port(), str(blocker / "store"))
    result = run_config_once(tmp_path, config)
    assert result.returncode == 2, result.stderr + result.stdout
    out = result.stdout + result.stderr
    assert "spec.triggers.http.attributes.async.directory" in out
    assert "listening" not in out.lower()


def test_example_pi_function(start_processor, tmp_path: Path) -> None:
    """examples/async as shipped, on a free port and a temp store."""
    config = yaml.safe_load((ROOT / "examples/async/function.yaml").read_text())
    port = free_port()
    attrs = config["spec"]["triggers"]["http"]["attributes"]
    attrs["port"] = port
    attrs["async"]["directory"] = str(tmp_path / "store")
    config["spec"]["triggers"]["http"]["url"] = f"127.0.0.1:{port}"
    receiver = CallbackReceiver().start()
    try:
        start_processor(config, function_dir=ROOT / "examples/async")
        status, headers, _ = _curl("-d", "30", "-H", f"X-Callback-Url: {receiver.url}",
                                   f"http://127.0.0.1:{port}/async-function/pi")
        assert status == 202
        wait_until(receiver.calls, what="the digits")
        cb_headers, body = receiver.calls()[0]
        assert body == b"3.141592653589793238462643383279"
        assert cb_headers["X-Call-Id"] == headers["x-call-id"]
        assert "X-Signature" not in cb_headers  # PI_CALLBACK_SECRET is not set
    finally:
        receiver.close()
