"""Several functions in one processor (``--config DIR``), the front door, and what covers
them all: ``/ready``, ``/api/status``, ``/metrics``."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from test.fusion_support import Fused, fn, fusion_platform, port_of, start_fused, write_functions
from test.support import free_port, wait_for

__all__ = ["start_fused"]


@pytest.fixture
def three(tmp_path: Path, start_fused: Callable[..., Fused]) -> dict[str, Any]:
    """echo (process), text (thread) and async-echo (async), each with its own env."""
    configs = {
        "echo": fn("echo", "fusion_fns:echo", kind="process", workers=2,
                   env={"FUSION_TEST_VAR": "echo's"}),
        "text": fn("text", "fusion_fns:text", kind="thread", env={"FUSION_TEST_VAR": "text's"}),
        "async-echo": fn("async-echo", "fusion_fns:async_echo", kind="async", workers=4),
    }
    door = free_port()
    write_functions(tmp_path / "fns", list(configs.values()))
    platform = fusion_platform(tmp_path, front_door=door)
    processor = start_fused([tmp_path / "fns"], platform)
    return {"configs": configs, "door": door, "processor": processor}


def _door(three: dict[str, Any], path: str) -> str:
    return f"http://127.0.0.1:{three['door']}{path}"


def test_front_door_gives_the_same_event_as_the_functions_own_trigger(three: dict[str, Any]
                                                                      ) -> None:
    own = requests.put(f"http://127.0.0.1:{port_of(three['configs']['echo'])}/a/b?x=1&y=2",
                       data=b"payload", headers={"Content-Type": "text/csv"}, timeout=10)
    # curl, as a user would, through the front door: the path after the name is the path.
    curl = subprocess.run(["curl", "-s", "-X", "PUT", "--data-binary", "payload",
                           "-H", "Content-Type: text/csv",
                           _door(three, "/function/echo/a/b?x=1&y=2")],
                          capture_output=True, timeout=20, check=True)
    assert own.status_code == 200
    via_door = json.loads(curl.stdout)
    assert via_door == own.json()
    assert via_door["path"] == "/a/b" and via_door["fields"] == {"x": "1", "y": "2"}
    assert via_door["method"] == "PUT" and via_door["body"] == "payload"
    assert via_door["function"] == "echo" and via_door["env"] == "echo's"


def test_front_door_reaches_every_worker_kind_and_keeps_status_and_headers(
        three: dict[str, Any]) -> None:
    text = requests.get(_door(three, "/function/text"), timeout=10)
    assert (text.status_code, text.text) == (200, "plain text answer")
    assert text.headers["Content-Type"].startswith("text/plain")
    echo = requests.post(_door(three, "/function/async-echo/deep/path"), json={"k": 1},
                         timeout=10).json()
    assert echo["path"] == "/deep/path" and echo["body"] == {"k": 1}
    bare = requests.get(_door(three, "/function/echo"), timeout=10).json()
    assert bare["path"] == "/"


def test_unknown_name_is_a_404_that_lists_nothing(three: dict[str, Any]) -> None:
    for path in ("/function/nope", "/function/", "/elsewhere", "/async-function/nope"):
        method = requests.post if path.startswith("/async") else requests.get
        response = method(_door(three, path), timeout=10)
        assert response.status_code == 404, path
        body = response.json()
        assert set(body) == {"error"}
        for name in ("echo", "text", "async-echo"):
            assert f"'{name}'" not in body["error"]


def test_async_through_the_front_door_for_any_function(three: dict[str, Any]) -> None:
    accepted = requests.post(_door(three, "/async-function/text/p?q=1"), data=b"x", timeout=10)
    assert accepted.status_code == 202, accepted.text
    location = accepted.headers["Location"]

    def finished() -> Any:
        status = requests.get(_door(three, location), timeout=10).json()
        return status if status.get("state") == "succeeded" else None

    status = wait_for(finished, 20, "the async call to finish", lambda: three["processor"].logs)
    assert status["function"] == "text"
    accepted = requests.post(_door(three, "/async-function/echo/p"), data=b"x", timeout=10)
    assert accepted.status_code == 202


def test_ready_status_and_metrics_cover_every_function(three: dict[str, Any]) -> None:
    processor: Fused = three["processor"]
    ready = requests.get(f"http://127.0.0.1:{processor.health_port}/ready", timeout=10).json()
    assert ready["ready"] is True
    assert set(ready["functions"]) == {"echo", "text", "async-echo"}
    assert all(f["ready"] for f in ready["functions"].values())
    for name in ("echo", "text", "async-echo"):
        requests.get(_door(three, f"/function/{name}"), timeout=10)
    status = requests.get(f"http://127.0.0.1:{processor.health_port}/api/status",
                          timeout=10).json()
    assert {f["name"] for f in status["functions"]} == {"echo", "text", "async-echo"}
    assert {f["name"]: f["worker_kind"] for f in status["functions"]} == {
        "echo": "process", "text": "thread", "async-echo": "async"}
    assert sorted(t["function"] for t in status["triggers"]) == ["async-echo", "echo", "text"]
    metrics = requests.get(f"http://127.0.0.1:{processor.metrics_port}/metrics",
                           timeout=10).text
    for name in ("echo", "text", "async-echo"):
        line = next(line for line in metrics.splitlines()
                    if line.startswith("nuclio_processor_handled_events_total{")
                    and f'function="{name}"' in line and 'result="success"' in line)
        assert f'instance="default-{name}"' in line
        assert float(line.rsplit(" ", 1)[1]) >= 1
    assert metrics.count("# TYPE nuclio_processor_handled_events_total counter") == 1


def test_each_process_function_gets_only_its_own_env(three: dict[str, Any]) -> None:
    own = requests.get(f"http://127.0.0.1:{port_of(three['configs']['echo'])}/", timeout=10)
    assert own.json()["env"] == "echo's"
    assert own.json()["function"] == "echo"


def test_ready_is_503_while_one_function_is_still_initialising(
        tmp_path: Path, start_fused: Callable[..., Fused]) -> None:
    """The quick function is initialised at once; the other's init_context takes a minute:
    /ready stays 503 and names which function is not ready."""
    configs = [fn("quick", "hello:handler"), fn("slow", "slow_init:handler")]
    write_functions(tmp_path / "fns", configs)
    processor = start_fused([tmp_path / "fns"], fusion_platform(tmp_path), ready=False)
    url = f"http://127.0.0.1:{processor.health_port}/ready"
    answers = []
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            answers.append(requests.get(url, timeout=1))
        time.sleep(0.1)
    assert answers, processor.logs[-2000:]
    assert {a.status_code for a in answers} == {503}
    assert set(answers[-1].json()["functions"]) == {"quick", "slow"}


def test_functions_keep_their_own_module_of_the_same_name(
        tmp_path: Path, start_fused: Callable[..., Fused]) -> None:
    """``main.py`` (and a sibling ``helpers.py``) in every folder, as Nuclio users write
    them: in-process functions (async, thread) each run their own module and helpers
    although they share one interpreter, and a module loaded in the processor does not
    stand in for a process worker's own (auto kind: process)."""
    configs = {"alpha": fn("alpha", "main:handler"), "beta": fn("beta", "main:handler"),
               "gamma": fn("gamma", "main:handler"),
               "delta": fn("delta", "main:handler", kind="async"),
               "epsilon": fn("epsilon", "main:handler", kind="thread")}
    with_helpers = "import helpers\n\n"
    sources = {"alpha": with_helpers + "async def handler(context, event):\n"
                                       "    return helpers.WORD\n",
               "beta": "def handler(context, event):\n    return 'beta'\n",
               "gamma": "def handler(context, event):\n    return 'gamma'\n",
               "delta": with_helpers + "async def handler(context, event):\n"
                                       "    return helpers.WORD\n",
               "epsilon": with_helpers + "def handler(context, event):\n"
                                         "    return helpers.WORD\n"}
    for name, config in configs.items():
        folder = tmp_path / "fns" / name
        folder.mkdir(parents=True)
        (folder / "function.yaml").write_text(yaml.safe_dump(config))
        (folder / "main.py").write_text(sources[name])
        (folder / "helpers.py").write_text(f"WORD = {name!r}\n")
    platform = fusion_platform(tmp_path)
    processor = Fused([tmp_path / "fns"], platform, tmp_path, function_dir=None)
    try:
        processor.wait_ready()
        for name, config in configs.items():
            answer = requests.get(f"http://127.0.0.1:{port_of(config)}/", timeout=10)
            assert answer.text == name
        status = requests.get(f"http://127.0.0.1:{processor.health_port}/api/status",
                              timeout=10).json()
        assert {f["name"]: f["worker_kind"] for f in status["functions"]} == {
            "alpha": "async", "beta": "process", "gamma": "process", "delta": "async",
            "epsilon": "thread"}
    finally:
        processor.stop()
