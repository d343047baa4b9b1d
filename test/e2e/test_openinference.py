"""The openinference trigger end to end: a real processor, driven by tritonclient (HTTP
with and without the binary extension, gRPC), tritonclient's own generated gRPC stub for
typed contents, and curl for the JSON routes. Loopback only.

(Our generated ``protos.open_inference_pb2`` is not imported here: it registers the same
``inference.*`` message names as tritonclient's modules in protobuf's default pool.)"""

from __future__ import annotations

import gzip
import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import requests
import tritonclient.grpc as tgrpc
import tritonclient.http as thttp
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from test.conftest import RunningProcessor, function_config, run_config_once
from test.support import free_port

LISTEN = ("--listen-host", "127.0.0.1")
MODEL = "doubler"
ALL_TYPES: list[tuple[str, np.ndarray]] = [
    ("BOOL", np.array([[True, False, True]])),
    ("UINT8", np.array([[0, 7, 100]], dtype=np.uint8)),
    ("UINT16", np.array([[1, 300, 3000]], dtype=np.uint16)),
    ("UINT32", np.array([[1, 70000, 3]], dtype=np.uint32)),
    ("UINT64", np.array([[1, 2**40, 3]], dtype=np.uint64)),
    ("INT8", np.array([[-1, 20, -60]], dtype=np.int8)),
    ("INT16", np.array([[-300, 2, 3]], dtype=np.int16)),
    ("INT32", np.array([[-70000, 2, 3]], dtype=np.int32)),
    ("INT64", np.array([[-(2**40), 2, 3]], dtype=np.int64)),
    ("FP16", np.array([[0.5, -1.25, 3.0]], dtype=np.float16)),
    ("FP32", np.array([[0.5, -1.25, 3.0]], dtype=np.float32)),
    ("FP64", np.array([[0.5, -1.25, 1e300 / 4]], dtype=np.float64)),
    ("BYTES", np.array([[b"ab", b"", "é".encode()]], dtype=object)),
]


def expected(array: np.ndarray) -> np.ndarray:
    if array.dtype == object:
        return np.array([x.upper() for x in array.ravel()], dtype=object).reshape(array.shape)
    if array.dtype == bool:
        return ~array
    return array * 2


def oi_config(handler: str, *, attributes: dict[str, Any] | None = None, workers: int = 2,
              **trigger: Any) -> tuple[dict[str, Any], int, int]:
    rest, grpc_port = free_port(), free_port()
    attrs = {"model_name": MODEL, "model_version": "3", "rest_port": rest,
             "grpc_port": grpc_port, **(attributes or {})}
    cfg = function_config(handler, triggers={"infer": {
        "kind": "openinference", "numWorkers": workers, "attributes": attrs, **trigger}})
    cfg["spec"]["disableDefaultHTTPTrigger"] = True
    return cfg, rest, grpc_port


class Server:
    def __init__(self, proc: RunningProcessor, rest: int, grpc_port: int) -> None:
        self.proc, self.rest_port, self.grpc_port = proc, rest, grpc_port
        self.rest = f"http://127.0.0.1:{rest}"
        self.http = thttp.InferenceServerClient(f"127.0.0.1:{rest}")
        self.grpc = tgrpc.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        self.channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)

    def close(self) -> None:
        self.http.close()
        self.grpc.close()
        self.channel.close()


def _start(tmp: Path, cfg: dict[str, Any], rest: int, grpc_port: int) -> Server:
    proc = RunningProcessor(cfg, workdir=tmp, extra_args=LISTEN)
    proc.wait_ready()
    return Server(proc, rest, grpc_port)


@pytest.fixture(scope="module")
def numpy_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    cfg, rest, grpc_port = oi_config("inference_numpy:handler")
    server = _start(tmp_path_factory.mktemp("numpy"), cfg, rest, grpc_port)
    yield server
    server.close()
    server.proc.stop()


@pytest.fixture(scope="module")
def faults_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    cfg, rest, grpc_port = oi_config(
        "inference_faults:handler", workers=1,
        attributes={"input_tensors": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
                    "output_tensors": [{"name": "y", "data_type": "FP32", "shape": [-1, 4]},
                                       {"name": "z", "dataType": "INT32", "shape": [2]}],
                    "max_request_bytes": 4096, "max_grpc_message_bytes": 4096},
        workerAvailabilityTimeoutMilliseconds=200)
    cfg["spec"]["eventTimeout"] = "3s"
    server = _start(tmp_path_factory.mktemp("faults"), cfg, rest, grpc_port)
    yield server
    server.close()
    server.proc.stop()


def _x(rows: int = 1) -> np.ndarray:
    return np.arange(rows * 4, dtype=np.float32).reshape(rows, 4)


# -- health and metadata ------------------------------------------------------------------
def test_health_and_metadata_through_tritonclient(numpy_server: Server,
                                                  faults_server: Server) -> None:
    for client in (numpy_server.http, numpy_server.grpc):
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready(MODEL)
        assert client.is_model_ready(MODEL, "3")
    meta = faults_server.http.get_model_metadata(MODEL)
    assert meta["name"] == MODEL and meta["versions"] == ["3"]
    assert meta["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["y", "z"]
    gmeta = faults_server.grpc.get_model_metadata(MODEL, as_json=True)
    assert gmeta["inputs"][0] == {"name": "x", "datatype": "FP32", "shape": ["-1", "4"]}
    assert faults_server.grpc.get_server_metadata(as_json=True)["extensions"] == [
        "binary_tensor_data"]


def test_json_routes_with_curl(numpy_server: Server) -> None:
    def curl(*args: str) -> tuple[int, Any]:
        out = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], check=True,
                             capture_output=True, text=True, timeout=10).stdout
        body, _, code = out.rpartition("\n")
        return int(code), json.loads(body) if body else None

    base = numpy_server.rest
    assert curl(f"{base}/v2") == (200, {"name": "nuclio-py-processor", "version": "0.1.0",
                                        "extensions": ["binary_tensor_data"]})
    assert curl(f"{base}/v2/health/live")[0] == 200
    assert curl(f"{base}/v2/health/ready") == (200, {"ready": True})
    assert curl(f"{base}/v2/models/{MODEL}/versions/3/ready") == (200, {"name": MODEL,
                                                                         "ready": True})
    request = {"id": "r-1", "inputs": [{"name": "a", "datatype": "INT32", "shape": [2, 2],
                                        "data": [[1, 2], [3, 4]]}]}
    code, doc = curl("-X", "POST", "-H", "Content-Type: application/json", "-d",
                     json.dumps(request), f"{base}/v2/models/{MODEL}/infer")
    assert code == 200
    assert doc == {"model_name": MODEL, "model_version": "3", "id": "r-1",
                   "outputs": [{"name": "a_out", "datatype": "INT32", "shape": [2, 2],
                                "data": [2, 4, 6, 8]}]}
    code, doc = curl(f"{base}/v2/models/other")
    assert code == 404 and "unknown model 'other'" in doc["error"]
    code, doc = curl(f"{base}/v2/models/{MODEL}/versions/9/infer", "-d", json.dumps(request))
    assert code == 404 and "no version '9'" in doc["error"]
    code, doc = curl("-X", "GET", f"{base}/v2/models/{MODEL}/infer")
    assert code == 405 and "error" in doc


# -- every datatype, both protocols, both encodings ----------------------------------------
@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_every_datatype_over_http(numpy_server: Server, binary: bool) -> None:
    for datatype, array in ALL_TYPES:
        tensor = thttp.InferInput("t", list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=binary)
        result = numpy_server.http.infer(
            MODEL, [tensor], outputs=[thttp.InferRequestedOutput("t_out", binary_data=binary)])
        got = result.as_numpy("t_out")
        want = expected(array)
        assert got.shape == want.shape, datatype
        if datatype == "BYTES" and not binary:  # JSON BYTES come back as str
            want = np.array([x.decode() for x in want.ravel()], dtype=object).reshape(want.shape)
        np.testing.assert_array_equal(got, want, err_msg=datatype)
        assert result.get_output("t_out")["datatype"] == datatype


def test_every_datatype_over_grpc(numpy_server: Server) -> None:
    for datatype, array in ALL_TYPES:
        tensor = tgrpc.InferInput("t", list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        result = numpy_server.grpc.infer(MODEL, [tensor], model_version="3")
        got = result.as_numpy("t_out")
        np.testing.assert_array_equal(got, expected(array), err_msg=datatype)
        assert got.dtype == array.dtype, datatype
        assert result.get_output("t_out").datatype == datatype


def test_grpc_typed_contents(numpy_server: Server) -> None:
    request = pb.ModelInferRequest(model_name=MODEL, id="typed")
    request.inputs.add(name="i", datatype="INT16", shape=[3],
                       contents=pb.InferTensorContents(int_contents=[1, -2, 300]))
    request.inputs.add(name="f", datatype="FP64", shape=[1, 2],
                       contents=pb.InferTensorContents(fp64_contents=[0.25, 8.0]))
    request.inputs.add(name="s", datatype="BYTES", shape=[1],
                       contents=pb.InferTensorContents(bytes_contents=[b"hi"]))
    response = numpy_server.stub.ModelInfer(request, timeout=10)
    assert response.id == "typed" and response.model_version == "3"
    outputs = {o.name: (o, raw) for o, raw in zip(response.outputs,
                                                  response.raw_output_contents, strict=True)}
    out, raw = outputs["i_out"]
    assert out.datatype == "INT16" and list(out.shape) == [3]
    assert np.frombuffer(raw, "<i2").tolist() == [2, -4, 600]
    assert np.frombuffer(outputs["f_out"][1], "<f8").tolist() == [0.5, 16.0]
    assert outputs["s_out"][1] == b"\x02\x00\x00\x00HI"
    bad = pb.ModelInferRequest(model_name=MODEL)
    bad.inputs.add(name="h", datatype="FP16", shape=[1],
                   contents=pb.InferTensorContents(fp32_contents=[1.0]))
    with pytest.raises(grpc.RpcError) as info:
        numpy_server.stub.ModelInfer(bad, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "raw_input_contents" in info.value.details()


def test_requested_outputs_and_multiple_inputs(faults_server: Server) -> None:
    tensor = thttp.InferInput("x", [2, 4], "FP32")
    tensor.set_data_from_numpy(_x(2))
    result = faults_server.http.infer(MODEL, [tensor],
                                      outputs=[thttp.InferRequestedOutput("z")])
    assert result.as_numpy("z").tolist() == [0, 0]
    assert result.as_numpy("y") is None
    # Declared output datatypes apply: y is FP32 even though x + 1 is computed by numpy.
    result = faults_server.http.infer(MODEL, [tensor])
    assert result.as_numpy("y").dtype == np.float32
    np.testing.assert_array_equal(result.as_numpy("y"), _x(2) + 1)
    gtensor = tgrpc.InferInput("x", [1, 4], "FP32")
    gtensor.set_data_from_numpy(_x())
    with pytest.raises(InferenceServerException) as info:
        faults_server.grpc.infer(MODEL, [gtensor], outputs=[tgrpc.InferRequestedOutput("w")])
    assert "StatusCode.INVALID_ARGUMENT" in str(info.value) and "'w'" in str(info.value)


def test_handler_output_forms(faults_server: Server) -> None:
    def infer(mode: str) -> Any:
        tensor = thttp.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(_x(), binary_data=False)
        return faults_server.http.infer(MODEL, [tensor], parameters={"mode": mode})

    np.testing.assert_array_equal(infer("array").as_numpy("y"), _x() + 1)  # first declared
    result = infer("json_list")
    assert result.get_output("y")["datatype"] == "FP64"
    assert result.get_response()["parameters"] == {"note": "json form"}
    assert infer("body").as_numpy("x_seen_in_body").tolist() == [0, 1, 2, 3]


def test_seed_style_handler_runs_unmodified(tmp_path: Path) -> None:
    cfg, rest, grpc_port = oi_config("inference_plain:handler", workers=1)
    server = _start(tmp_path, cfg, rest, grpc_port)
    try:
        tensor = thttp.InferInput("input", [1, 3], "FP32")
        tensor.set_data_from_numpy(np.array([[1.0, 2.0, 3.0]], dtype=np.float32))
        result = server.http.infer(MODEL, [tensor])
        assert result.as_numpy("output_input").tolist() == [[2.0, 4.0, 6.0]]
        assert result.get_response()["model_name"] == MODEL
        gtensor = tgrpc.InferInput("input", [2], "INT64")
        gtensor.set_data_from_numpy(np.array([5, 7], dtype=np.int64))
        gresult = server.grpc.infer(MODEL, [gtensor])
        assert gresult.as_numpy("output_input").tolist() == [10, 14]
        assert gresult.as_numpy("output_input").dtype == np.int64
    finally:
        server.close()
        server.proc.stop()


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_handler_importing_tritonclient_grpc(tmp_path: Path, kind: str) -> None:
    cfg, rest, grpc_port = oi_config("inference_with_tritonclient:handler", workers=1)
    cfg["spec"]["runtimeAttributes"] = {"workerKind": kind}
    server = _start(tmp_path, cfg, rest, grpc_port)
    try:
        tensor = tgrpc.InferInput("x", [2], "INT32")
        tensor.set_data_from_numpy(np.array([1, 2], dtype=np.int32))
        assert server.grpc.infer(MODEL, [tensor]).as_numpy("y").tolist() == [2, 3]
        assert server.grpc.get_model_metadata(MODEL).name == MODEL
    finally:
        server.close()
        server.proc.stop()


# -- bad input and faulty handlers ------------------------------------------------------------
def test_malformed_requests_get_400_and_the_server_keeps_serving(faults_server: Server) -> None:
    url = f"{faults_server.rest}/v2/models/{MODEL}/infer"

    def post(body: Any, **headers: str) -> tuple[int, str]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        r = requests.post(url, data=data, headers=headers, timeout=10)
        return r.status_code, r.json()["error"]

    x = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
    cases = [
        (b"{not json", "not valid JSON"),
        ({"inputs": [{**x, "datatype": "FP8"}]}, "unknown datatype 'FP8'"),
        ({"inputs": [{**x, "shape": [1, 5]}]}, "does not match the model's [-1, 4]"),
        ({"inputs": [{**x, "shape": [2, 4]}]}, "needs 8 elements, got 4"),
        ({"inputs": [{**x, "name": "q"}]}, "unexpected input 'q'"),
        ({"inputs": [{**x, "datatype": "INT32"}]}, "does not match the model's FP32"),
        ({"inputs": [{**x, "data": ["a", "b", "c", "d"]}]}, "does not fit datatype FP32"),
        ({"inputs": []}, "non-empty list"),
        ({"inputs": [x, x]}, "appears twice"),
        ({"inputs": [{k: v for k, v in x.items() if k != "data"}]}, "neither data nor"),
    ]
    for body, message in cases:
        status, error = post(body)
        assert status == 400 and message in error, (body, error)
    header = json.dumps({"inputs": [{**{k: v for k, v in x.items() if k != "data"},
                                     "parameters": {"binary_data_size": 16}}]}).encode()
    status, error = post(header + b"\0" * 8, **{
        "Inference-Header-Content-Length": str(len(header))})
    assert status == 400 and "binary_data_size 16" in error
    status, error = post(header + b"\0" * 16, **{"Inference-Header-Content-Length": "99999"})
    assert status == 400 and "Inference-Header-Content-Length" in error
    with pytest.raises(grpc.RpcError) as info:
        faults_server.channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")(
            b"\xff\xff\xff", timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(InferenceServerException) as unknown:
        faults_server.grpc.is_model_ready("nope")
    assert "NOT_FOUND" in str(unknown.value)
    tensor = tgrpc.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(_x())
    with pytest.raises(InferenceServerException) as unknown:
        faults_server.grpc.infer("nope", [tensor])
    assert "NOT_FOUND" in str(unknown.value)
    assert faults_server.grpc.infer(MODEL, [tensor]).as_numpy("z").tolist() == [0, 0]


def test_compressed_requests(numpy_server: Server) -> None:
    """tritonclient's request compression; aiohttp decodes it (within the size limit)."""
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    for algorithm in ("gzip", "deflate"):
        tensor = thttp.InferInput("c", [3, 4], "FP32")
        tensor.set_data_from_numpy(array)
        result = numpy_server.http.infer(MODEL, [tensor], request_compression_algorithm=algorithm)
        np.testing.assert_array_equal(result.as_numpy("c_out"), array * 2)
    url = f"{numpy_server.rest}/v2/models/{MODEL}/infer"
    bad = requests.post(url, data=b"not gzip", headers={"Content-Encoding": "gzip"}, timeout=10)
    assert bad.status_code == 400 and "content-encoding" in bad.json()["error"]
    assert numpy_server.proc.metric("nuclio_processor_rejected_events_total",
                                    reason="bad_encoding") == 1


def test_oversized_requests(faults_server: Server) -> None:
    big = np.zeros((300, 4), dtype=np.float32)  # 4.8 KB of data > 4096 bytes allowed
    tensor = thttp.InferInput("x", list(big.shape), "FP32")
    tensor.set_data_from_numpy(big)
    with pytest.raises(InferenceServerException) as info:
        faults_server.http.infer(MODEL, [tensor])
    assert info.value.status() == "413"
    gtensor = tgrpc.InferInput("x", list(big.shape), "FP32")
    gtensor.set_data_from_numpy(big)
    with pytest.raises(InferenceServerException) as ginfo:
        faults_server.grpc.infer(MODEL, [gtensor])
    assert "RESOURCE_EXHAUSTED" in str(ginfo.value)
    # A small gzip body that would expand past the limit is refused too.
    bomb = gzip.compress(b" " * 100_000)
    expanded = requests.post(f"{faults_server.rest}/v2/models/{MODEL}/infer", data=bomb,
                             headers={"Content-Encoding": "gzip"}, timeout=10)
    assert len(bomb) < 4096 and expanded.status_code == 413
    assert faults_server.proc.metric("nuclio_processor_rejected_events_total",
                                     reason="body_too_large") >= 2


def test_handler_errors_reach_the_client_in_protocol_form(faults_server: Server) -> None:
    def both(mode: str) -> tuple[InferenceServerException, InferenceServerException]:
        tensor = thttp.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(_x())
        gtensor = tgrpc.InferInput("x", [1, 4], "FP32")
        gtensor.set_data_from_numpy(_x())
        with pytest.raises(InferenceServerException) as http_error:
            faults_server.http.infer(MODEL, [tensor], parameters={"mode": mode})
        with pytest.raises(InferenceServerException) as grpc_error:
            faults_server.grpc.infer(MODEL, [gtensor], parameters={"mode": mode})
        return http_error.value, grpc_error.value

    http_error, grpc_error = both("raise")
    assert http_error.status() == "500" and "StatusCode.INTERNAL" in str(grpc_error)
    for error in (http_error, grpc_error):
        assert "secret internal detail" not in str(error) and "Traceback" not in str(error)
    http_error, grpc_error = both("status")
    assert http_error.status() == "422"
    assert "input rejected by the model" in str(http_error)
    assert "StatusCode.INVALID_ARGUMENT" in str(grpc_error)
    assert "input rejected by the model" in str(grpc_error)
    http_error, grpc_error = both("garbage")
    assert http_error.status() == "500" and "expected output tensors" in str(http_error)
    assert "StatusCode.INTERNAL" in str(grpc_error)
    tensor = tgrpc.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(_x())
    assert faults_server.grpc.infer(MODEL, [tensor]).as_numpy("z").tolist() == [0, 0]


def test_no_free_worker_then_timeout(faults_server: Server) -> None:
    tensor = tgrpc.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(_x())
    errors: list[str] = []

    def slow() -> None:
        try:
            faults_server.grpc.infer(MODEL, [tensor], parameters={"mode": "sleep",
                                                                  "seconds": 1.5})
        except InferenceServerException as exc:
            errors.append(str(exc))

    worker = threading.Thread(target=slow)
    worker.start()
    time.sleep(0.5)
    with pytest.raises(InferenceServerException) as busy:
        faults_server.grpc.infer(MODEL, [tensor])
    htensor = thttp.InferInput("x", [1, 4], "FP32")
    htensor.set_data_from_numpy(_x())
    with pytest.raises(InferenceServerException) as hbusy:
        faults_server.http.infer(MODEL, [htensor])
    worker.join()
    assert not errors
    assert "UNAVAILABLE" in str(busy.value) and hbusy.value.status() == "503"
    assert faults_server.proc.metric("nuclio_processor_rejected_events_total",
                                     reason="no_worker") >= 2
    with pytest.raises(InferenceServerException) as info:
        faults_server.grpc.infer(MODEL, [tensor], parameters={"mode": "sleep", "seconds": 10})
    assert "DEADLINE_EXCEEDED" in str(info.value)  # eventTimeout 3 s: the worker is replaced
    deadline = time.monotonic() + 10
    while True:  # the replacement worker serves once it has started
        try:
            assert faults_server.grpc.infer(MODEL, [tensor]).as_numpy("z").tolist() == [0, 0]
            break
        except InferenceServerException:
            assert time.monotonic() < deadline, "no replacement worker within 10 s"
            time.sleep(0.2)


def test_draining_server_is_not_ready(tmp_path: Path) -> None:
    """After SIGTERM, requests already accepted finish; the model stops being ready (503)
    for clients still connected, and new inferences are refused."""
    cfg, rest, grpc_port = oi_config("inference_faults:handler", workers=1)
    server = _start(tmp_path, cfg, rest, grpc_port)
    session = requests.Session()  # one keep-alive connection, open before the SIGTERM
    ready_url = f"{server.rest}/v2/models/{MODEL}/ready"
    try:
        assert session.get(ready_url, timeout=5).status_code == 200
        answers: list[Any] = []
        slow = threading.Thread(target=lambda: answers.append(requests.post(
            f"{server.rest}/v2/models/{MODEL}/infer", timeout=20, json={
                "parameters": {"mode": "sleep", "seconds": 2},
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]})))
        slow.start()
        time.sleep(0.5)
        server.proc.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        draining = session.get(ready_url, timeout=5)
        assert draining.status_code == 503 and draining.json() == {"name": MODEL,
                                                                     "ready": False}
        assert session.get(f"{server.rest}/v2/health/ready", timeout=5).status_code == 503
        slow.join()
        assert answers[0].status_code == 200
        assert server.proc.proc.wait(15) == 0
    finally:
        session.close()
        server.close()
        server.proc.stop()


def test_config_errors_exit_2_with_the_yaml_path(tmp_path: Path) -> None:
    def run(attributes: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return run_config_once(tmp_path, oi_config("inference_numpy:handler",
                                                   attributes=attributes)[0])

    cases = [
        ({"enable_rest": False, "enable_grpc": False},
         "spec.triggers.infer.attributes", "at least one protocol"),
        ({"input_tensors": [{"name": "x", "datatype": "FLOAT", "shape": [1]}]},
         "spec.triggers.infer.attributes.input_tensors[0].datatype", "FP32"),
        ({"output_tensors": [{"name": "x", "datatype": "FP32", "shape": [-2]}]},
         "spec.triggers.infer.attributes.output_tensors[0].shape", "-1 for any size"),
        ({"rest_port": 70000}, "spec.triggers.infer.attributes.rest_port", "65535"),
    ]
    for attributes, path, expected_text in cases:
        result = run(attributes)
        output = result.stdout + result.stderr
        assert result.returncode == 2, output
        assert path in output and expected_text in output, output
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = run({"grpc_port": taken.getsockname()[1]})
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "spec.triggers.infer.attributes.grpc_port" in output
    assert "already in use" in output
