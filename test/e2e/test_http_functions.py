"""Nuclio functions, unchanged, behind the HTTP trigger, in every worker kind."""

from __future__ import annotations

import gzip
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from test.conftest import free_port, function_config

# (worker kind, handler suffix): the async kind needs the ``async def`` variants.
KINDS = [("process", ""), ("thread", ""), ("async", "_async")]


def _start(start_processor, module: str, kind: str, suffix: str, **kwargs):
    port = free_port()
    cfg = function_config(f"{module}:handler{suffix}", port=port,
                          runtime_attributes={"workerKind": kind,
                                              **kwargs.pop("runtime_attributes", {})},
                          **kwargs)
    return start_processor(cfg), f"http://127.0.0.1:{port}"


@pytest.mark.parametrize(("kind", "suffix"), KINDS)
def test_every_return_type(start_processor, kind, suffix):
    _, base = _start(start_processor, "returns", kind, suffix)

    def get(path):
        return requests.get(base + path, timeout=10)

    r = get("/str")
    assert (r.status_code, r.text, r.headers["Content-Type"]) == (200, "text body", "text/plain")
    r = get("/bytes")
    assert (r.status_code, r.content) == (200, b"\x00\x01binary")
    assert r.headers["Content-Type"] == "application/octet-stream"
    r = get("/dict")
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    assert r.json() == {"a": 1, "nested": {"b": [1, 2]}}
    r = get("/list")
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == [1, "two", {"three": 3}]
    r = get("/tuple_str")
    assert (r.status_code, r.text) == (201, "created")
    r = get("/tuple_dict")
    assert (r.status_code, r.json()) == (202, {"accepted": True})
    r = get("/context_response")
    assert (r.status_code, r.text) == (418, "teapot")
    assert r.headers["Content-Type"] == "text/x-custom"
    assert r.headers["X-Custom"] == "yes"
    assert r.headers["X-Count"] == "7"  # numeric header values are kept (Nuclio drops them)
    r = get("/response_dict")
    assert (r.status_code, r.json()) == (200, {"k": "v"})
    assert r.headers["Content-Type"] == "application/json"
    r = get("/sdk_response")
    assert (r.status_code, r.content) == (203, b"raw")
    assert r.headers["Content-Type"] == "application/x-raw"
    assert r.headers["X-Float"] == "1.5"
    r = get("/none")
    assert (r.status_code, r.content) == (200, b"")  # Nuclio would send the text "None"
    r = get("/int")
    assert (r.status_code, r.text) == (200, "42")
    r = get("/exception_with_response")
    assert (r.status_code, r.text) == (409, "conflict")
    r = get("/bad_status")
    assert r.status_code == 500 and "invalid status" in r.json()["error"]
    r = get("/unsupported")
    assert r.status_code == 500 and "cannot send" in r.json()["error"]


@pytest.mark.parametrize(("kind", "suffix"), KINDS)
def test_event_and_context_fields(start_processor, kind, suffix):
    _, base = _start(start_processor, "inspect_event", kind, suffix,
                        env=[{"name": "CUSTOM_VAR", "value": "custom"},
                             {"name": "NUMBER_VAR", "value": 5}])
    r = requests.post(base + "/some/path?x=1&y=two", timeout=10,
                      data=json.dumps({"hello": "world"}),
                      headers={"Content-Type": "application/json; charset=utf-8",
                               "X-Test": "header-value"})
    assert r.status_code == 200, r.text
    seen = r.json()
    assert seen["body_type"] == "dict"  # JSON parsed despite the charset parameter
    assert seen["body"] == {"hello": "world"}
    assert seen["method"] == "POST"
    assert seen["path"] == "/some/path"
    assert seen["url"] == "/some/path?x=1&y=two"
    assert seen["fields"] == {"x": "1", "y": "two"}
    assert seen["header_x_test"] == "header-value"
    assert seen["timestamp_is_datetime"] is True
    assert (seen["trigger_kind"], seen["trigger_name"]) == ("http", "http")
    assert seen["context_trigger_name"] == "http"
    assert seen["worker_id_type"] == "str"
    assert seen["initialised"] is True
    assert seen["platform_kind"] == "local"
    assert seen["env_custom"] == "custom"
    assert seen["env_number"] == "5"
    assert seen["env_function_name"] == "test-fn"
    assert seen["is_sdk_event"] is True
    assert seen["response_class_ok"] is True

    r = requests.post(base + "/", data=b"not json", timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.json()["body_type"] == "bytes"  # unparsable JSON stays bytes, as in Nuclio
    r = requests.post(base + "/", data=b"plain", timeout=10,
                      headers={"Content-Type": "text/plain"})
    assert (r.json()["body_type"], r.json()["body"]) == ("bytes", "plain")

    ids = {requests.get(base + "/", timeout=10).json()["id"] for _ in range(20)}
    assert len(ids) == 20  # unique event ids (Nuclio's Python runtime repeats them)


def _child_pids(pid: int) -> list[int]:
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children


def test_init_context_runs_once_per_process_worker(start_processor):
    port = free_port()
    proc = start_processor(function_config("inspect_event:handler", port=port, workers=2,
                                     runtime_attributes={"workerKind": "process"}))
    base = f"http://127.0.0.1:{port}"

    def call(_):
        return requests.get(base + "/?s=0", timeout=10).json()

    with ThreadPoolExecutor(8) as pool:
        seen = list(pool.map(call, range(40)))
    workers = {(s["worker_id"], s["pid"]) for s in seen}
    assert sorted(_child_pids(proc.proc.pid)) == sorted({pid for _, pid in workers})
    assert {w for w, _ in workers} == {"0", "1"}
    assert len({pid for _, pid in workers}) == 2  # two OS processes
    # user_data persists per worker: each worker's call counter grows past 1.
    assert max(s["calls"] for s in seen) > 1


def test_async_handler_with_async_init(start_processor):
    port = free_port()
    proc = start_processor(function_config("async_init:handler", port=port, workers=8))
    base = f"http://127.0.0.1:{port}"
    r = requests.get(base + "/", timeout=10)
    assert r.json()["init"] == "async-init"
    assert _child_pids(proc.proc.pid) == []  # no process worker was started, or left over

    # Auto-selected async kind: 8 concurrent 0.5 s sleeps finish together, not in series.
    def call(_):
        return requests.get(base + "/?sleep=0.5", timeout=10).status_code

    import time
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(call, range(8)))
    assert codes == [200] * 8
    assert time.monotonic() - started < 2.0


def test_logger_calls_and_log_capture(start_processor):
    port = free_port()
    proc = start_processor(function_config("logging_fn:handler", port=port))
    r = requests.get(f"http://127.0.0.1:{port}/", timeout=10,
                     headers={"X-Nuclio-Log-Level": "debug"})
    assert r.text == "logged"
    records = json.loads(r.headers["X-Nuclio-Logs"])
    messages = [rec["message"] for rec in records]
    assert messages == ["debug line with-arg", "info line", "warn line", "error line 7"]
    assert records[2]["with"] == {"user": "alice", "count": 3}
    assert records[3]["level"] == "error"

    r = requests.get(f"http://127.0.0.1:{port}/", timeout=10,
                     headers={"X-Nuclio-Log-Level": "warn"})
    assert [rec["message"] for rec in json.loads(r.headers["X-Nuclio-Logs"])] == \
        ["warn line", "error line 7"]
    r = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
    assert "X-Nuclio-Logs" not in r.headers

    lines = [json.loads(line) for line in proc.logs.splitlines() if line.startswith("{")]
    warn = [rec for rec in lines if rec["message"] == "warn line"]
    assert warn and warn[0]["level"] == "warn" and warn[0]["with"] == {"user": "alice",
                                                                       "count": 3}
    assert warn[0]["worker_id"] == "0" and "time" in warn[0]


def test_batch_mode_matches_responses_to_events(start_processor):
    port = free_port()
    proc = start_processor(function_config(
        "batching:handler", port=port,
        http_extra={"batch": {"mode": "enable", "batchSize": 4, "timeout": "300ms"}}))
    base = f"http://127.0.0.1:{port}"

    def call(i):
        return requests.post(base + "/", data=f"item{i}", timeout=10).text

    with ThreadPoolExecutor(8) as pool:
        bodies = list(pool.map(call, range(8)))
    # Each caller gets its own event's response even though the handler reversed them.
    assert [b.split(":")[0] for b in bodies] == [f"item{i}" for i in range(8)]
    sizes = [int(b.split(":")[1]) for b in bodies]
    assert max(sizes) > 1  # events really were batched
    # A lone event is flushed by the batch timeout.
    assert requests.post(base + "/", data="solo", timeout=10).text == "solo:1"
    assert proc.metric("nuclio_processor_handled_events_total", result="success") == 9


def test_http_trigger_details(start_processor):
    port = free_port()
    proc = start_processor(function_config(
        "returns:handler", port=port,
        http_extra={"attributes": {"maxRequestBodySize": 1024,
                                   "cors": {"enabled": True,
                                            "allowOrigins": ["https://a.example"]}}}))
    base = f"http://127.0.0.1:{port}"
    r = requests.post(base + "/str", data=b"x" * 2048, timeout=10)
    assert r.status_code == 413 and "larger than 1024" in r.json()["error"]
    # A chunked body (no Content-Length) over the limit is refused too.
    r = requests.post(base + "/str", data=iter([b"x" * 800, b"y" * 800]), timeout=10)
    assert r.status_code == 413
    assert requests.post(base + "/str", data=b"x" * 1000, timeout=10).status_code == 200
    # Compressed bodies are decoded; the limit applies to what they expand to.
    gz = {"Content-Encoding": "gzip"}
    assert requests.post(base + "/str", data=gzip.compress(b"x" * 1000), headers=gz,
                         timeout=10).status_code == 200
    r = requests.post(base + "/str", data=gzip.compress(b"x" * 5000), headers=gz, timeout=10)
    assert r.status_code == 413
    r = requests.post(base + "/str", data=b"not gzip", headers=gz, timeout=10)
    assert r.status_code == 400 and "content-encoding" in r.json()["error"]

    r = requests.options(base + "/str", timeout=10, headers={
        "Origin": "https://a.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Content-Type"})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "https://a.example"
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    r = requests.options(base + "/str", timeout=10, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 400
    r = requests.get(base + "/str", timeout=10, headers={"Origin": "https://a.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://a.example"

    assert requests.get(base + "/__internal/health", timeout=10).status_code == 200
    live = requests.get(proc.url(proc.health_port, "/live"), timeout=10)
    assert live.status_code == 200
    assert proc.metric("nuclio_processor_rejected_events_total", reason="body_too_large") == 3
    assert proc.metric("nuclio_processor_rejected_events_total", reason="bad_encoding") == 1


def test_curl_client(start_processor):
    """curl, the tool people actually use against a function."""
    port = free_port()
    start_processor(function_config("returns:handler", port=port))
    out = subprocess.run(["curl", "-sS", "-i", f"http://127.0.0.1:{port}/dict"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    assert out.startswith("HTTP/1.1 200")
    assert "Content-Type: application/json" in out
    assert out.rstrip().endswith('{"a":1,"nested":{"b":[1,2]}}')


def test_default_http_trigger_and_metrics(start_processor):
    """With no http trigger, the implicit default-http one serves on :8080 (bound to
    loopback here through --listen-host)."""
    cfg = function_config("returns:handler", triggers={})
    try:
        with __import__("socket").create_connection(("127.0.0.1", 8080), timeout=0.2):
            pytest.fail("port 8080 is taken on this machine; cannot test the default trigger")
    except OSError:
        pass
    proc = start_processor(cfg, extra_args=("--listen-host", "127.0.0.1"))
    r = requests.get("http://127.0.0.1:8080/str", timeout=10)
    assert r.text == "text body"
    assert proc.metric("nuclio_processor_handled_events_total", trigger_id="default-http",
                       result="success") == 1
    assert proc.metric("nuclio_processor_event_latency_seconds_count",
                       trigger_name="default-http") == 1
