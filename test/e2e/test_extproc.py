"""The extproc trigger end to end: curl/requests -> a real Envoy -> our processor as its
ext_proc server -> Envoy -> an aiohttp echo upstream (which answers with JSON saying what
it received). Loopback ports only; one Envoy and processor per processor type, shared
by the tests of that type."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gzip
import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
import yaml
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from grpc_health.v1 import health_pb2, health_pb2_grpc

from test.conftest import (
    ROOT,
    RunningProcessor,
    function_config,
    run_config_once,
)
from test.envoy_support import Route, RunningEnvoy, RunningUpstream
from test.support import free_port

TIMEOUT = 10.0
LIMIT = 64 << 10  # perRequestBodyBufferBytes in these tests
ENVOY_BUFFER = 256 << 10  # Envoy's per-connection buffer limit in these tests
REJECTED = "nuclio_processor_rejected_events_total"


def extproc_config(handler: str, triggers: dict[str, dict[str, Any]],
                   env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A function.yaml with extproc triggers (name -> attributes and trigger keys)."""
    spec_triggers = {}
    for name, trigger in triggers.items():
        trigger = dict(trigger)
        attributes = trigger.pop("attributes")
        spec_triggers[name] = {"kind": "extproc", "numWorkers": trigger.pop("workers", 4),
                               "attributes": attributes, **trigger}
    cfg = function_config(handler, triggers=spec_triggers, env=env)
    cfg["spec"]["disableDefaultHTTPTrigger"] = True
    return cfg


class Stack:
    """A processor, the echo upstream and an Envoy in front of both."""

    def __init__(self, workdir: Path, upstream: RunningUpstream, config: dict[str, Any],
                 routes: list[Route]) -> None:
        self.processor = RunningProcessor(config, workdir=workdir,
                                          extra_args=("--listen-host", "127.0.0.1"))
        try:
            self.processor.wait_ready()
            self.envoy = RunningEnvoy.with_routes(routes, upstream.port, workdir,
                                                  buffer_limit=ENVOY_BUFFER)
        except BaseException:
            self.processor.stop()
            raise

    def request(self, method: str, path: str, route: int = 0, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        return requests.request(method, self.envoy.url(path, route), **kwargs)

    def rejected(self, reason: str) -> float:
        return self.processor.metric(REJECTED, trigger_kind="extproc", reason=reason)

    def stop(self) -> None:
        self.envoy.stop()
        assert self.processor.stop() == 0, self.processor.logs


def running_stack(tmp_path_factory: pytest.TempPathFactory, upstream: RunningUpstream,
                  name: str, config: dict[str, Any], routes: list[Route]) -> Iterator[Stack]:
    """A module fixture's ``Stack``, stopped (and its exit checked) at the end."""
    stack = Stack(tmp_path_factory.mktemp(name), upstream, config, routes)
    yield stack
    stack.stop()


def seen(headers: dict[str, str], key: str) -> dict[str, Any]:
    """What the handler reported seeing (see test/functions/extproc_rules.py)."""
    assert key in headers, f"the handler did not run: no {key} in {headers}"
    report: dict[str, Any] = json.loads(headers[key])
    return report


# -- wrapprocessor: both directions ------------------------------------------------------------
@pytest.fixture(scope="module")
def wrap(tmp_path_factory: pytest.TempPathFactory, upstream: RunningUpstream) -> Iterator[Stack]:
    port, per_chunk = free_port(), free_port()
    config = extproc_config("extproc_rules:handler", {
        "ep": {"attributes": {
            "type": "wrapprocessor", "port": port,
            "processingOptions": {"perRequestBodyBufferBytes": LIMIT, "logStream": True}}},
        "chunks": {"attributes": {
            "type": "wrapprocessor", "port": per_chunk,
            "processingOptions": {"bufferStreamedBodies": False, "logPhases": True}}}})
    yield from running_stack(tmp_path_factory, upstream, "wrap", config, [
        Route(port, message_timeout="0.5s"),  # 0: BUFFERED both ways
        Route(port, request_body="STREAMED", message_timeout="2s"),  # 1: chunks, accumulated
        Route(per_chunk, request_body="STREAMED", message_timeout="2s"),  # 2: chunk by chunk
    ])


def test_get_without_body_reaches_the_handler_once_per_direction(wrap):
    response = wrap.request("GET", "/add-header?a=1&b=two")
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["headers"]["x-added"] == "by-the-function"  # the request was changed
    request_id = echoed["headers"]["x-request-id"]
    before = seen(echoed["headers"], "x-seen-request")
    assert before["phase"] == "1"  # no body: the headers phase
    assert (before["method"], before["path"]) == ("GET", "/add-header")
    assert before["fields"] == {"a": "1", "b": "two", "request_id": request_id}
    assert (before["size"], before["has_pseudo"], before["trigger"]) == (0, False, "extproc")
    assert before["host"] == f"127.0.0.1:{wrap.envoy.routes[0].port}"  # from :authority
    after = seen(response.headers, "x-seen-response")
    assert after["phase"] == "5"  # the echo answers with a body
    assert (after["method"], after["path"]) == ("GET", "/add-header")  # the request's
    assert after["fields"]["upstream_status"] == 200
    assert after["fields"]["request_id"] == request_id
    assert after["content_type"].startswith("application/json")
    assert after["size"] == len(response.content)


def test_post_with_body_is_seen_whole_and_passes_unchanged(wrap):
    body = {"key": "value", "n": 1}
    response = wrap.request("POST", "/add-header", json=body)
    assert response.status_code == 200
    echoed = response.json()
    assert json.loads(echoed["body"]) == body
    assert echoed["headers"]["content-length"] == str(echoed["body_length"])
    assert echoed["headers"]["x-added"] == "by-the-function"
    before = seen(echoed["headers"], "x-seen-request")
    assert before["phase"] == "2"
    assert before["content_type"] == "application/json"
    assert json.loads(before["body"]) == body  # parsed as JSON, as Nuclio does


def test_headers_are_removed_by_the_documented_marker(wrap):
    response = wrap.request("POST", "/remove-header", data=b"x",
                            headers={"X-Remove-Me": "1", "X-Keep-Me": "2"})
    headers = response.json()["headers"]
    assert "x-remove-me" not in headers
    assert headers["x-keep-me"] == "2"
    assert "x-nuclio-remove-headers" not in headers  # markers never travel


def test_body_rewrite_changes_length_consistently(wrap):
    response = wrap.request("POST", "/rewrite", data=b"short",
                            headers={"content-type": "application/octet-stream"})
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["body"] == "a new body, longer than the one the client sent"
    assert echoed["headers"]["content-length"] == str(len(echoed["body"]))
    assert echoed["headers"]["content-type"] == "text/plain"


def test_immediate_403_with_headers_and_body(wrap):
    response = wrap.request("GET", "/deny")
    assert response.status_code == 403
    assert response.json() == {"denied": True}
    assert response.headers["x-denied-by"] == "function"
    assert response.headers["content-type"] == "application/json"
    assert "x-upstream" not in response.headers  # the upstream never saw it


def test_immediate_200_by_marker(wrap):
    response = wrap.request("POST", "/allow", data=b"ignored")
    assert response.status_code == 200
    assert response.text == "answered by the function"
    assert "x-upstream" not in response.headers
    assert "x-nuclio-immediate-response" not in response.headers


def test_response_rewrite_replaces_status_and_body(wrap):
    response = wrap.request("GET", "/response-rewrite")
    assert response.status_code == 202
    assert response.json() == {"rewritten": True, "upstream": 200}
    assert response.headers["content-length"] == str(len(response.content))
    assert response.headers["x-upstream"] == "echo"  # other upstream headers stay


def test_gzip_request_body_is_decompressed_for_the_handler(wrap):
    text = b"zipped text " * 20
    compressed = gzip.compress(text)
    response = wrap.request("POST", "/add-header", data=compressed,
                            headers={"content-encoding": "gzip", "content-type": "text/plain"})
    echoed = response.json()
    before = seen(echoed["headers"], "x-seen-request")
    assert before["body"] == text.decode()[:200]
    assert before["size"] == len(text)
    assert before["content_encoding"] is None  # the handler sees the decoded body
    # Unchanged by the handler: the upstream gets the original gzip bytes and header.
    assert echoed["headers"]["content-encoding"] == "gzip"
    assert echoed["headers"]["content-length"] == str(len(compressed))
    # Rewritten: the new body is plain, so content-encoding goes.
    rewritten = wrap.request("POST", "/rewrite", data=compressed,
                             headers={"content-encoding": "gzip"}).json()
    assert rewritten["body"] == "a new body, longer than the one the client sent"
    assert "content-encoding" not in rewritten["headers"]
    # A body that is not the gzip it claims: the protocol's 400, not a crash.
    broken = wrap.request("POST", "/add-header", data=b"not gzip at all",
                          headers={"content-encoding": "gzip"})
    assert broken.status_code == 400
    assert "gzip" in broken.json()["error"]


def test_bodies_over_the_limits_get_413(wrap):
    before = wrap.rejected("body_too_large") if "body_too_large" in \
        wrap.processor.metrics() else 0.0
    ours = wrap.request("POST", "/add-header", data=b"x" * (LIMIT + 1))
    assert ours.status_code == 413
    assert ours.json()["error"] == f"the body is over {LIMIT} bytes"
    assert wrap.rejected("body_too_large") == before + 1
    bomb = wrap.request("POST", "/add-header", data=gzip.compress(b"\0" * (4 * LIMIT)),
                        headers={"content-encoding": "gzip"})
    assert bomb.status_code == 413  # decompressed size is bounded too
    envoys = wrap.request("POST", "/add-header", data=b"x" * (ENVOY_BUFFER + 1))
    assert envoys.status_code == 413  # over Envoy's own buffer: Envoy answers
    assert wrap.request("GET", "/add-header").status_code == 200


def test_handler_exception_is_a_500_without_traceback(wrap):
    for path in ("/raise", "/response-raise"):
        response = wrap.request("GET", path)
        assert response.status_code == 500
        assert response.json()["error"] == "the function raised an exception"
        assert "secret" not in response.text and "Traceback" not in response.text
    assert "a secret detail that must not leak" in wrap.processor.logs  # logged instead
    assert wrap.request("GET", "/add-header").status_code == 200


def test_slow_handler_beyond_message_timeout(wrap):
    started = time.monotonic()
    response = wrap.request("GET", "/slow")
    elapsed = time.monotonic() - started
    assert response.status_code == 504  # Envoy's answer to message_timeout (0.5 s)
    assert elapsed < 1.4  # Envoy did not wait for the 1.5 s handler
    assert wrap.request("GET", "/add-header").status_code == 200  # the server goes on
    time.sleep(1.2)  # the slow event completes on its worker; its reply is dropped
    assert "Replacing worker" not in wrap.processor.logs
    assert wrap.request("GET", "/add-header").status_code == 200


def test_streamed_chunks_are_accumulated_for_one_handler_call(wrap):
    def chunks() -> Iterator[bytes]:
        for i in range(5):
            yield b"chunk%d;" % i
            time.sleep(0.02)

    passed = wrap.request("POST", "/add-header", route=1, data=chunks()).json()
    assert passed["body"] == "chunk0;chunk1;chunk2;chunk3;chunk4;"  # held back, then sent
    assert "x-added" not in passed["headers"]  # STREAMED: headers went on before the body
    once = wrap.request("POST", "/echo-body", route=1, data=chunks()).json()
    assert once["body"] == "[handler saw: chunk0;chunk1;chunk2;chunk3;chunk4;]"
    per_chunk = wrap.request("POST", "/echo-body", route=2, data=chunks()).json()
    assert per_chunk["body"].count("[handler saw: chunk") == 5  # without bufferStreamedBodies
    assert per_chunk["body"].startswith("[handler saw: chunk0;]")
    phase_lines = [json.loads(line) for line in wrap.processor.logs.splitlines()
                   if '"ext_proc phase"' in line]  # logPhases, on the per-chunk trigger
    assert {(line["with"]["trigger"], line["with"]["phase"]) for line in phase_lines} >= {
        ("chunks", 2), ("chunks", 5)}
    assert all(line["with"]["trigger"] == "chunks" for line in phase_lines)


def test_a_stream_cancelled_midway_does_not_hurt_the_server(wrap):
    port = _trigger_port(wrap.processor.config_path)

    async def cancel_midway() -> str:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            status = (await health.Check(health_pb2.HealthCheckRequest(
                service="envoy.service.ext_proc.v3.ExternalProcessor"))).status
            call = channel.stream_stream(
                "/envoy.service.ext_proc.v3.ExternalProcessor/Process",
                request_serializer=pb.ProcessingRequest.SerializeToString,
                response_deserializer=pb.ProcessingResponse.FromString)()
            headers = pb.HttpHeaders(end_of_stream=True)
            headers.headers.headers.add(key=":path", raw_value=b"/slow")
            await call.write(pb.ProcessingRequest(request_headers=headers))
            await asyncio.sleep(0.1)
            call.cancel()
            return health_pb2.HealthCheckResponse.ServingStatus.Name(status)

    assert asyncio.run(asyncio.wait_for(cancel_midway(), TIMEOUT)) == "SERVING"
    assert wrap.request("GET", "/add-header").status_code == 200


def _trigger_port(config_path: Path) -> int:
    config = yaml.safe_load(config_path.read_text())
    port: int = next(iter(config["spec"]["triggers"].values()))["attributes"]["port"]
    return port


# -- preprocessor and postprocessor --------------------------------------------------------------
@pytest.fixture(scope="module")
def pre(tmp_path_factory: pytest.TempPathFactory, upstream: RunningUpstream) -> Iterator[Stack]:
    port = free_port()
    config = extproc_config("extproc_rules:handler",
                            {"ep": {"attributes": {"type": "preprocessor", "port": port}}})
    yield from running_stack(tmp_path_factory, upstream, "pre", config, [
        Route(port, request_body="NONE", response_headers="SKIP", response_body="NONE"),
        Route(port, response_headers="SKIP", response_body="NONE"),
    ])


def test_preprocessor_headers_only_runs_at_phase_1_even_with_a_body(pre):
    echoed = pre.request("POST", "/add-header", data=b"a body Envoy does not send").json()
    assert echoed["headers"]["x-added"] == "by-the-function"
    assert echoed["body"] == "a body Envoy does not send"
    before = seen(echoed["headers"], "x-seen-request")
    assert (before["phase"], before["size"]) == ("1", 0)
    assert pre.request("GET", "/deny").status_code == 403


def test_preprocessor_leaves_responses_alone(pre):
    response = pre.request("GET", "/response-rewrite", route=1)
    assert response.status_code == 200  # not 202: responses are not processed
    assert "x-seen-response" not in response.headers
    assert seen(response.json()["headers"], "x-seen-request")["phase"] == "1"


@pytest.fixture(scope="module")
def post(tmp_path_factory: pytest.TempPathFactory, upstream: RunningUpstream) -> Iterator[Stack]:
    port = free_port()
    config = extproc_config("extproc_rules:handler",
                            {"ep": {"attributes": {"type": "postprocessor", "port": port}}})
    yield from running_stack(tmp_path_factory, upstream, "post", config, [
        Route(port, request_body="NONE"),
        Route(port, request_body="NONE", response_body="NONE"),
    ])


def test_postprocessor_rewrites_responses_only(post):
    response = post.request("GET", "/deny")  # a preprocessor would deny it
    assert response.status_code == 200
    assert "x-seen-request" not in response.json()["headers"]
    assert seen(response.headers, "x-seen-response")["phase"] == "5"
    rewritten = post.request("POST", "/response-rewrite", data=b"abc")
    assert rewritten.status_code == 202
    assert rewritten.json() == {"rewritten": True, "upstream": 200}


def test_postprocessor_headers_only_sees_upstream_status(post):
    response = post.request("GET", "/add-header", route=1, headers={"x-echo-status": "404"})
    assert response.status_code == 404  # a 200 from the handler keeps the upstream status
    after = seen(response.headers, "x-seen-response")
    assert (after["phase"], after["size"]) == ("4", 0)
    assert after["fields"]["upstream_status"] == 404
    assert post.request("GET", "/response-raise", route=1).status_code == 500


# -- observeprocessor ----------------------------------------------------------------------------
def observer(tmp_path_factory: pytest.TempPathFactory, attributes: dict[str, Any]
             ) -> tuple[Path, dict[str, Any]]:
    """A slow observeprocessor (2 workers, 0.6 s per event) writing what it sees to a log
    (test/functions/extproc_observe.py): the log and the function config."""
    log = tmp_path_factory.mktemp("observed") / "events.jsonl"
    log.touch()
    config = extproc_config(
        "extproc_observe:handler",
        {"ep": {"workers": 2, "attributes": {"type": "observeprocessor", **attributes}}},
        env=[{"name": "OBSERVE_LOG", "value": str(log)}, {"name": "OBSERVE_DELAY",
                                                           "value": "0.6"}])
    return log, config


@pytest.fixture(scope="module")
def observe(tmp_path_factory: pytest.TempPathFactory,
            upstream: RunningUpstream) -> Iterator[tuple[Stack, Path]]:
    port = free_port()
    log, config = observer(tmp_path_factory, {"port": port, "observeQueueSize": 4})
    for stack in running_stack(tmp_path_factory, upstream, "observe", config, [
            Route(port, message_timeout="0.2s"),
            # Envoy's observability_mode refuses BUFFERED bodies ("wrong body mode").
            Route(port, message_timeout="0.2s", observability_mode=True,
                  request_body="STREAMED", response_body="STREAMED")]):
        yield stack, log


def _observed(log: Path, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        lines = [json.loads(line) for line in log.read_text().splitlines()]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


@pytest.mark.parametrize("route", [0, 1], ids=["continue-at-once", "observability_mode"])
def test_observer_never_delays_traffic(observe, route):
    stack, log = observe
    log.write_text("")
    started = time.monotonic()
    get = stack.request("GET", f"/seen-{route}", route=route)
    posted = stack.request("POST", f"/seen-{route}", route=route, data=b"12345")
    elapsed = time.monotonic() - started
    assert (get.status_code, posted.status_code) == (200, 200)
    assert posted.json()["body"] == "12345"  # the handler's return value changes nothing
    assert elapsed < 1.0  # had Envoy waited for the 0.6 s handler: >= 2.4 s (4 events)
    events = _observed(log, 4)
    time.sleep(0.7)  # a consumer is free by now: any extra event would have been written
    events = _observed(log, 4)
    assert len(events) == 4, events  # one event per message, no more
    phases = sorted((e["method"], e["phase"], e["size"]) for e in events)
    assert phases[:2] == [("GET", "1", 0), ("GET", "5", len(get.content))]
    assert phases[2:] == [("POST", "2", 5), ("POST", "5", len(posted.content))]
    assert all(e["status"] == 200 for e in events if e["phase"] == "5")


def test_observer_queue_is_bounded_and_drops_are_counted(observe):
    stack, log = observe
    log.write_text("")
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda i: stack.request("GET", f"/burst/{i}").status_code,
                                 range(24)))
    assert statuses == [200] * 24  # traffic is never refused for the observer's sake
    assert stack.rejected("observe_queue_full") > 0
    handled = len(_observed(log, 48, timeout=2.0))
    assert 0 < handled < 48


# -- no free worker: fail-open (default) and fail-closed -------------------------------------------
@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory, upstream: RunningUpstream) -> Iterator[Stack]:
    open_port, closed_port = free_port(), free_port()
    one_worker = {"workers": 1, "workerAvailabilityTimeoutMilliseconds": 0}
    config = extproc_config("extproc_rules:handler", {
        "open": {**one_worker, "attributes": {"type": "preprocessor", "port": open_port}},
        "closed": {**one_worker, "attributes": {"type": "preprocessor", "port": closed_port,
                                                "failOpen": False}}})
    yield from running_stack(tmp_path_factory, upstream, "busy", config, [
        Route(open_port, message_timeout="3s"), Route(closed_port, message_timeout="3s")])


@pytest.mark.parametrize(("route", "status", "reason"),
                         [(0, 200, "no_worker_fail_open"), (1, 503, "no_worker")],
                         ids=["fail-open", "fail-closed"])
def test_no_free_worker(busy, route, status, reason):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(busy.request, "GET", "/slow", route)
        time.sleep(0.4)  # the only worker is now busy for 1.5 s
        response = busy.request("GET", "/add-header", route=route)
        assert slow.result().status_code == 200
    assert response.status_code == status
    if status == 200:  # went on unmodified
        assert "x-added" not in response.json()["headers"]
    else:
        assert response.json()["error"] == "no worker is available"
    assert busy.processor.metric(REJECTED, trigger_name=["open", "closed"][route],
                                 reason=reason) == 1


# -- shutdown ------------------------------------------------------------------------------------
def test_sigterm_lets_a_stream_in_flight_finish(tmp_path_factory, upstream):
    port = free_port()
    config = extproc_config("extproc_rules:handler", {"ep": {"attributes": {
        "type": "preprocessor", "port": port, "gracefulShutdownTimeout": "5s"}}})
    stack = Stack(tmp_path_factory.mktemp("sigterm"), upstream, config,
                  [Route(port, message_timeout="3s")])
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            slow = pool.submit(stack.request, "GET", "/slow")
            time.sleep(0.4)  # the 1.5 s handler is running
            stack.processor.proc.send_signal(signal.SIGTERM)
            response = slow.result()
        assert response.status_code == 200
        assert "x-seen-request" in response.json()["headers"]  # the handler's reply arrived
        assert stack.processor.proc.wait(10) == 0
    finally:
        stack.stop()


# -- configuration errors --------------------------------------------------------------------------
def _run_config(tmp_path: Path, attributes: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return run_config_once(tmp_path, extproc_config("extproc_rules:handler",
                                                    {"ep": {"attributes": attributes}}))


@pytest.mark.parametrize(("attributes", "expected"), [
    ({"port": 1}, "spec.triggers.ep.attributes.type"),
    ({"type": "preprocessor"}, "spec.triggers.ep.attributes.port"),
    ({"type": "sideprocessor", "port": 1}, "spec.triggers.ep.attributes.type"),
    ({"type": "preprocessor", "port": 1, "processingOptions": {"perRequestBodyBufferBytes": 0}},
     "spec.triggers.ep.attributes.processingOptions.perRequestBodyBufferBytes"),
    ({"type": "preprocessor", "port": 1, "gracefulShutdownTimeout": "soon"},
     "spec.triggers.ep.attributes.gracefulShutdownTimeout"),
    ({"type": "preprocessor", "port": 1, "transport": "smtp"},
     "spec.triggers.ep.attributes.transport"),
])
def test_bad_attributes_exit_2(tmp_path, attributes, expected):
    done = _run_config(tmp_path, attributes)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert expected in output
    if "sideprocessor" in str(attributes):
        assert "preprocessor" in output and "wrapprocessor" in output  # what is expected
    assert "listening" not in output


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_taken_port_exit_2(tmp_path, transport):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        done = _run_config(tmp_path, {"type": "wrapprocessor", "port": taken,
                                      "transport": transport})
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"spec.triggers.ep.attributes.port: port {taken} on 127.0.0.1 is already in use" \
        in done.stdout + done.stderr



# -- the example people copy -----------------------------------------------------------------------
def test_the_envoy_example_works_as_shipped(tmp_path, upstream):
    """examples/envoy as is, but for its ports (loopback ports nobody else holds)."""
    example = ROOT / "examples" / "envoy"
    function = yaml.safe_load((example / "function.yaml").read_text())
    extproc_port, listen_port, admin_port = free_port(), free_port(), free_port()
    function["spec"]["triggers"]["extproc"]["attributes"]["port"] = extproc_port
    envoy_config = yaml.safe_load((example / "envoy.yaml").read_text())
    envoy_config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    listener = envoy_config["static_resources"]["listeners"][0]
    listener["address"]["socket_address"]["port_value"] = listen_port
    ports = {"app": upstream.port, "extproc": extproc_port}
    for cluster in envoy_config["static_resources"]["clusters"]:
        endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        endpoint["address"]["socket_address"]["port_value"] = ports[cluster["name"]]
    processor = RunningProcessor(function, function_dir=example, workdir=tmp_path,
                                 extra_args=("--listen-host", "127.0.0.1"))
    try:
        processor.wait_ready()
        envoy = RunningEnvoy(envoy_config, tmp_path)
        try:
            url = f"http://127.0.0.1:{listen_port}/anything"
            refused = requests.get(url, timeout=TIMEOUT)
            assert refused.status_code == 401
            assert refused.json() == {"error": "missing or unknown x-api-key"}
            passed = requests.post(url, data=b"payload", headers={"x-api-key": "demo"},
                                   timeout=TIMEOUT)
            assert passed.status_code == 200
            echoed = passed.json()
            assert echoed["headers"]["x-gatekeeper"] == "passed"
            assert "x-api-key" not in echoed["headers"]
            assert echoed["body"] == "payload"
        finally:
            envoy.stop()
    finally:
        assert processor.stop() == 0
    assert "ext_proc stream ended" in processor.logs  # logStream: true
