"""``context.platform.call_function`` fused (the callee in the same processor) and apart
(the callee in another processor, reached over HTTP through ``fusion.functionAddresses``):
the caller gets the same status, headers and body either way, from every worker kind.

Three processors on loopback: ``local`` hosts callers and callees, ``callees`` hosts the
callees alone, and ``apart`` hosts the callers with the callees' addresses.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from test.fusion_support import Fused, fn, fusion_platform, log_records, port_of, write_functions

CALLERS = {"caller-process": ("fusion_fns:caller", "process"),
           "caller-thread": ("fusion_fns:caller", "thread"),
           "caller-async": ("fusion_fns:async_caller", "async")}
CALLEES = {"text": ("fusion_fns:text", "process"),
           "json": ("fusion_fns:json_answer", "thread"),
           "binary": ("fusion_fns:binary", "process"),
           "not-found": ("fusion_fns:not_found", "thread"),
           "raises": ("fusion_fns:raises", "process"),
           "slow": ("fusion_fns:slow", "thread"),
           "echo-async": ("fusion_fns:async_echo", "async")}


def _callees() -> list[dict[str, Any]]:
    return [fn(name, handler, kind=kind, workers=2)
            for name, (handler, kind) in CALLEES.items()]


def _callers() -> list[dict[str, Any]]:
    return [fn(name, handler, kind=kind, workers=4)
            for name, (handler, kind) in CALLERS.items()]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("call-function")
    started: list[Fused] = []
    try:
        local_callers, local_callees = _callers(), _callees()
        write_functions(root / "local" / "fns", local_callers + local_callees)
        local = Fused([root / "local" / "fns"], fusion_platform(root / "local"), root)
        started.append(local)
        remote_callees = _callees()
        write_functions(root / "callees" / "fns", remote_callees)
        callees = Fused([root / "callees" / "fns"], fusion_platform(root / "callees"), root)
        started.append(callees)
        addresses = {c["metadata"]["name"]: f"http://127.0.0.1:{port_of(c)}"
                     for c in remote_callees}
        apart_callers = _callers()
        write_functions(root / "apart" / "fns", apart_callers)
        apart = Fused([root / "apart" / "fns"],
                      fusion_platform(root / "apart", addresses=addresses), root)
        started.append(apart)
        for running in started:
            running.wait_ready()
        yield {"local": local, "callees": callees, "apart": apart,
               "local_ports": {c["metadata"]["name"]: port_of(c) for c in local_callers},
               "apart_ports": {c["metadata"]["name"]: port_of(c) for c in apart_callers}}
    finally:
        for running in started:
            running.stop()


def ask(port: int, request: dict[str, Any], headers: dict[str, str] | None = None
        ) -> dict[str, Any]:
    response = requests.post(f"http://127.0.0.1:{port}/", json=request, headers=headers,
                             timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _stable(described: dict[str, Any]) -> dict[str, Any]:
    """Leaves out what differs between any two calls (event ids, trace span ids)."""
    out = json.loads(json.dumps(described))
    body = out["body"]
    if isinstance(body, dict):
        body.pop("event_id", None)
        body.pop("traceparent", None)
        body.pop("trigger", None)
    return out


EXPECTED = {
    "text": (200, "text/plain"),
    "json": (200, "application/json"),
    "binary": (200, "application/octet-stream"),
    "not-found": (404, "text/plain"),
    "raises": (500, "application/json"),
    "slow": (504, "application/json"),
    "echo-async": (200, "application/json"),
}


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("callee", list(CALLEES))
def test_fused_and_apart_give_the_same_response(world: dict[str, Any], caller: str,
                                                callee: str) -> None:
    request = {"target": callee, "body": "input", "path": "/some/path", "method": "PUT",
               "timeout": 1.0 if callee == "slow" else 20.0}
    fused = ask(world["local_ports"][caller], request)
    apart = ask(world["apart_ports"][caller], request)
    assert _stable(fused) == _stable(apart)
    status, content_type = EXPECTED[callee]
    assert fused["type"] == "Response"
    assert (fused["status"], fused["content_type"]) == (status, content_type)
    assert fused["headers"]["content-type"] == content_type
    assert all(key == key.lower() for key in fused["headers"])
    if callee == "json":
        assert fused["body"] == {"answer": 42, "list": [1, 2]}  # parsed, as Nuclio does
    elif callee == "binary":
        assert fused["body"] == {"base64": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIj"
                                           "JCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZH"
                                           "SElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWpr"
                                           "bG1ub3BxcnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6P"
                                           "kJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmqq6ytrq+wsbKz"
                                           "tLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX"
                                           "2Nna29zd3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7"
                                           "/P3+/w=="}
    elif callee == "not-found":
        assert fused["headers"]["x-reason"] == "missing"
    elif callee == "echo-async":
        echoed = fused["body"]
        assert (echoed["method"], echoed["path"], echoed["body"]) == ("PUT", "/some/path",
                                                                       "input")
        assert echoed["depth"] == "1"


def test_an_unknown_function_is_a_quick_404(world: dict[str, Any]) -> None:
    for ports in (world["local_ports"], world["apart_ports"]):
        for caller in CALLERS:
            described = ask(ports[caller], {"target": "nobody-hosts-this"})
            assert described["status"] == 404
            assert "nobody-hosts-this" in described["body"]["error"]


def test_the_trace_id_is_kept_across_hops_and_logged_on_each(world: dict[str, Any]) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace}-00f067aa0ba902b7-01"
    for key in ("local_ports", "apart_ports"):
        described = ask(world[key]["caller-process"], {"target": "echo-async"},
                        {"traceparent": parent})
        child = described["body"]["traceparent"]
        assert child.startswith(f"00-{trace}-") and child != parent
    for name in ("local", "apart", "callees"):
        records = [r for r in log_records(world[name].logs)
                   if r.get("with", {}).get("trace_id") == trace]
        assert records, f"no log line of {name} carries the trace id"
    local = [r for r in log_records(world["local"].logs)
             if r.get("with", {}).get("trace_id") == trace]
    names = {r["name"] for r in local}
    assert {"caller-process", "processor"} <= names
    callee_lines = [r for r in log_records(world["callees"].logs)
                    if r.get("with", {}).get("trace_id") == trace]
    assert any(r["name"] == "echo-async" for r in callee_lines + local)
