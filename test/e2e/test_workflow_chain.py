"""Workflows and the image chain end to end: real processors on loopback, real curl.

What issue 14 asks to be shown: the image chain gives byte-identical JPEGs
fused (one processor, ``--config DIR``), apart (one processor per function,
the workflow calling them over HTTP) and piped through the client with curl;
a workflow succeeds, stops at a failing step (status, body,
``X-Workflow-Failed-Step``, later steps not called), reports an unreachable
remote step, carries ``Server-Timing``, runs asynchronously with one callback
at the end; and broken workflow configs exit 2 naming the YAML path.

These run against the multi-function CLI (repeated ``--config``, ``--config
DIR``, ``fusion.frontDoor`` and ``fusion.functionAddresses`` in platform.yaml),
which arrives with the fusion branch.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from PIL import Image

from fusion.tracing import parse
from test.async_support import CallbackReceiver, wait_until
from test.conftest import run_processor_once
from test.support import free_port, platform_config
from test.workflow_support import (
    CHAIN_STEPS,
    Processor,
    chain_copy,
    function_folder,
    function_yaml,
    sample_jpeg,
)

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_ENTRY = rf"{_TOKEN};dur=[0-9]+(\.[0-9]+)?"


def server_timing_steps(value: str) -> list[str]:
    """The step names of a Server-Timing header, after checking its syntax."""
    assert re.fullmatch(rf"{_ENTRY}(\s*,\s*{_ENTRY})*", value), value
    return [entry.split(";")[0].strip() for entry in value.split(",")]


@dataclass
class Fused:
    """One processor hosting three step functions and three workflows, with a front door."""

    proc: Processor
    ports: dict[str, int]
    record: Path

    def url(self, name: str, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    def calls(self) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        return [json.loads(line) for line in self.record.read_text().splitlines()]

    def reset(self) -> None:
        self.record.write_text("")


@pytest.fixture(scope="module")
def fused(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fused]:
    tmp = tmp_path_factory.mktemp("workflows")
    record = tmp / "calls.jsonl"
    env = {"WORKFLOW_RECORD": str(record)}
    names = ("upper", "refuse", "exclaim", "ok-flow", "bad-flow", "down-flow")
    ports = {name: free_port() for name in names}
    configs = [function_folder(tmp / "fns", function_yaml(
        role, ports[role], handler=f"workflow_steps:{role}", env=env), "workflow_steps")
        for role in ("upper", "refuse", "exclaim")]
    flows: dict[str, list[dict[str, Any]]] = {
        "ok-flow": [{"name": "one", "function": "upper"},
                    {"name": "two", "function": "exclaim", "path": "/loud"}],
        "bad-flow": [{"name": "a", "function": "upper"}, {"name": "b", "function": "refuse"},
                     {"name": "c", "function": "exclaim"}],
        "down-flow": [{"name": "first", "function": "upper"},
                      {"name": "remote", "function": "gone"}],
    }
    async_on = {"async": {"enabled": True, "directory": str(tmp / "store"),
                          "callback": {"initialDelay": "50ms", "maxDelay": "300ms"}}}
    for name, steps in flows.items():
        configs.append(function_folder(tmp / "fns", function_yaml(
            name, ports[name], workflow={"steps": steps}, workers=4,
            http_attributes=async_on if name == "ok-flow" else None)))
    gone = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    proc = Processor(configs, tmp / "proc", front_door=True, addresses={"gone": gone})
    try:
        proc.wait_ready()
        yield Fused(proc, ports, record)
    finally:
        proc.stop()


def test_workflow_success_through_its_trigger_and_the_front_door(fused: Fused) -> None:
    for url in (fused.url("ok-flow"), fused.proc.front_door("ok-flow")):
        fused.reset()
        reply = requests.post(url, data=b"hello", timeout=20,
                              headers={"Content-Type": "text/plain", "traceparent": TRACE,
                                       "X-User": "u1"})
        assert reply.status_code == 201, reply.text  # the last step's status
        assert reply.content == b"HELLO!"
        assert reply.headers["Content-Type"] == "text/x-loud"
        assert reply.headers["X-Last"] == "exclaim"
        assert "X-Workflow-Failed-Step" not in reply.headers
        assert server_timing_steps(reply.headers["Server-Timing"]) == ["one", "two"]
        first, second = fused.calls()
        assert (first["role"], first["body"], first["method"]) == ("upper", "hello", "POST")
        assert (second["role"], second["body"]) == ("exclaim", "HELLO")
        assert (second["content_type"], second["path"]) == ("text/x-upper", "/loud")
        sent = parse(TRACE)
        assert sent is not None
        for call in (first, second):
            seen = parse(call["traceparent"])
            assert seen is not None and seen[0] == sent[0] and seen[1] != sent[1]


def test_failure_at_step_two_stops_the_chain(fused: Fused) -> None:
    fused.reset()
    reply = requests.post(fused.url("bad-flow"), data=b"hello", timeout=20)
    assert reply.status_code == 409
    assert reply.json() == {"error": "step two says no"}
    assert reply.headers["X-Workflow-Failed-Step"] == "b"
    assert reply.headers["X-Refused"] == "yes"
    assert server_timing_steps(reply.headers["Server-Timing"]) == ["a", "b"]
    assert [c["role"] for c in fused.calls()] == ["upper", "refuse"]  # c never called


def test_remote_step_down_is_a_502_failed_step(fused: Fused) -> None:
    fused.reset()
    reply = requests.post(fused.url("down-flow"), data=b"hello", timeout=20)
    assert reply.status_code == 502
    assert reply.headers["X-Workflow-Failed-Step"] == "remote"
    assert "'gone'" in reply.json()["error"]
    assert [c["role"] for c in fused.calls()] == ["upper"]


def test_step_timings_in_metrics_and_logs(fused: Fused) -> None:
    requests.post(fused.url("ok-flow"), data=b"x", timeout=20).raise_for_status()
    count = re.compile(r'^nuclio_processor_workflow_step_duration_seconds_count\{([^}]*)\} '
                       r'([0-9.e+]+)$', re.M)
    found = {frozenset(re.findall(r'(\w+)="([^"]*)"', labels)): float(value)
             for labels, value in count.findall(fused.proc.metrics())}
    one = frozenset({("function", "ok-flow"), ("workflow", "ok-flow"), ("step", "one")})
    assert found.get(one, 0) >= 1, found
    lines = [json.loads(line) for line in fused.proc.logs.splitlines()
             if line.startswith("{") and '"workflow step"' in line]
    steps = {(r["with"]["workflow"], r["with"]["step"]) for r in lines}
    assert {("ok-flow", "one"), ("ok-flow", "two")} <= steps
    assert all(isinstance(r["with"]["ms"], int | float) for r in lines)


def test_async_workflow_one_callback_at_the_end(fused: Fused) -> None:
    fused.reset()
    receiver = CallbackReceiver().start()
    try:
        reply = requests.post(fused.url("ok-flow", "/async-function/ok-flow"), data=b"later",
                              headers={"X-Callback-Url": receiver.url}, timeout=20)
        assert reply.status_code == 202, reply.text
        wait_until(receiver.calls, what="the workflow's callback")
        time.sleep(1.0)  # a second callback (one per step) would have come by now
        (headers, body), = receiver.calls()
        assert body == b"LATER!"
        assert headers["X-Function-Status"] == "201"
        assert headers["X-Call-Id"] == reply.headers["X-Call-Id"]
        assert [c["role"] for c in fused.calls()] == ["upper", "exclaim"]
    finally:
        receiver.close()


def _post(url: str, body: bytes) -> requests.Response:
    reply = requests.post(url, data=body, headers={"Content-Type": "image/jpeg"}, timeout=60)
    assert reply.status_code == 200, reply.text[:500]
    return reply


def test_image_chain_fused_apart_and_piped_are_byte_identical(tmp_path: Path) -> None:
    image = sample_jpeg()
    (tmp_path / "in.jpg").write_bytes(image)
    ports = chain_copy(tmp_path / "chain")
    steps = [Processor([tmp_path / "chain" / n / "function.yaml"], tmp_path / f"p-{n}")
             for n in CHAIN_STEPS]
    urls = {n: f"http://127.0.0.1:{ports[n]}" for n in CHAIN_STEPS}
    # Apart: two steps through the address map, the third through the environment.
    workflow = Processor([tmp_path / "chain" / "chain" / "function.yaml"], tmp_path / "p-wf",
                         addresses={n: urls[n] for n in ("transpose", "grayscale")},
                         env={"NUCLIO_FUNCTION_THUMBNAIL_URL": urls["thumbnail"]})
    try:
        for proc in (*steps, workflow):
            proc.wait_ready()
        piped = subprocess.run(
            ["bash", "-o", "pipefail", "-c",
             " | ".join(f"curl -sf --data-binary @{src} -H 'Content-Type: image/jpeg' {urls[n]}/"
                        for src, n in zip(("in.jpg", "-", "-"), CHAIN_STEPS, strict=True))],
            cwd=tmp_path, capture_output=True, timeout=60, check=True).stdout
        apart = _post(f"http://127.0.0.1:{ports['chain']}/", image)
    finally:
        for proc in (*steps, workflow):
            proc.stop()
    # Fused, beside a fourth function whose module is also main.py and whose (async)
    # handler is imported into the processor itself: Nuclio functions are main:handler
    # by convention, and each must keep running its own main.py.
    echo_port = free_port()
    function_folder(tmp_path / "chain", function_yaml(
        "echo", echo_port, handler="main:handler", runtime_attributes={"workerKind": "async"}))
    (tmp_path / "chain" / "echo" / "main.py").write_text(
        "async def handler(context, event):\n    return event.body\n")
    fused = Processor([tmp_path / "chain"], tmp_path / "p-fused", front_door=True)
    try:
        fused.wait_ready()
        together = _post(f"http://127.0.0.1:{ports['chain']}/", image)
        door = _post(fused.front_door("chain"), image)
        assert _post(f"http://127.0.0.1:{echo_port}/", b"echo").content == b"echo"
    finally:
        fused.stop()
    assert piped == apart.content == together.content == door.content
    assert apart.headers["Content-Type"] == together.headers["Content-Type"] == "image/jpeg"
    for reply in (apart, together, door):
        assert server_timing_steps(reply.headers["Server-Timing"]) == \
            ["rotate", "black-and-white", "shrink"]
    result = Image.open(io.BytesIO(piped))
    assert (result.format, result.mode, result.size) == ("JPEG", "L", (128, 96))


def _run_broken(tmp_path: Path, workflow: dict[str, Any]) -> tuple[subprocess.CompletedProcess[str],
                                                                    Path]:
    upper = function_folder(tmp_path, function_yaml("upper", free_port(),
                                                    handler="workflow_steps:upper"),
                            "workflow_steps")
    flow = function_folder(tmp_path, function_yaml("flow", free_port(), workflow=workflow))
    platform = tmp_path / "platform.yaml"
    platform.write_text(yaml.safe_dump(platform_config(free_port(), free_port())))
    result = run_processor_once(["--config", str(upper), "--config", str(flow),
                                 "--platform-config", str(platform),
                                 "--listen-host", "127.0.0.1"])
    return result, flow


def test_empty_steps_exit_2_naming_the_yaml_path(tmp_path: Path) -> None:
    result, flow = _run_broken(tmp_path, {"steps": []})
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert str(flow) in output and "spec.workflow.steps" in output
    assert "listening" not in output


def test_unknown_step_function_exit_2_naming_the_step(tmp_path: Path) -> None:
    result, flow = _run_broken(tmp_path, {"steps": [{"name": "a", "function": "upper"},
                                                    {"name": "b", "function": "nowhere"}]})
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert str(flow) in output and "spec.workflow.steps[1].function" in output
    assert "'nowhere'" in output and "listening" not in output
