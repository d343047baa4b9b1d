"""The workflow's own logic, with a fake ``Caller``: chaining, stopping, timing, config.

The end-to-end tests (test/e2e/test_workflow_chain.py) run workflows through real
processors; these pin the rules that are easy to get subtly wrong: the data
handed from step to step, that a failure stops the chain, the Server-Timing
syntax, the time budget, and the config errors' YAML paths.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import pytest

from core.config import ConfigError
from fusion.workflow import Workflow, server_timing, timing_token
from fusion.workflow_config import check_targets, parse_workflow
from runtime.events import RawEvent
from runtime.logger import Logger
from runtime.responses import RawResponse, error_response


class FakeCaller:
    """Answers from a table of functions; records every call (name, event, timeout)."""

    def __init__(self, **functions: Any) -> None:
        self.functions = functions
        self.calls: list[tuple[str, RawEvent, float | None]] = []

    async def call(self, name: str, event: RawEvent, timeout: float | None) -> RawResponse:
        self.calls.append((name, event, timeout))
        result = self.functions[name](event)
        if asyncio.iscoroutine(result):
            result = await result
        assert isinstance(result, RawResponse)
        return result


def upper(event: RawEvent) -> RawResponse:
    return RawResponse(200, {"X-Step": "upper"}, event.body.upper(), "text/x-upper")


def exclaim(event: RawEvent) -> RawResponse:
    return RawResponse(201, {"X-Step": "exclaim"}, event.body + b"!", "text/x-loud")


def refuse(event: RawEvent) -> RawResponse:
    return RawResponse(422, {"X-Why": "refused"}, b'{"error":"no"}', "application/json")


def request(body: bytes = b"hello", headers: dict[str, Any] | None = None) -> RawEvent:
    return RawEvent("ev-1", body, "text/plain",
                    headers if headers is not None else
                    {"Content-Type": "text/plain", "Content-Length": "5", "X-User": "u1"},
                    {"q": "1"}, "GET", "/incoming", "/incoming?q=1", time.time(), "http", "http")


def workflow(caller: FakeCaller, steps: list[dict[str, Any]], timeout: Any = None,
             observed: list[tuple[str, float]] | None = None,
             log_lines: list[str] | None = None) -> Workflow:
    raw: dict[str, Any] = {"steps": steps}
    if timeout is not None:
        raw["timeout"] = timeout
    logger = Logger("wf", sink=(log_lines if log_lines is not None else []).append)
    return Workflow("wf", parse_workflow(raw, "spec.workflow"), caller, logger,
                    None if observed is None else lambda s, d: observed.append((s, d)))


def test_each_output_is_the_next_input_and_the_last_response_wins() -> None:
    caller = FakeCaller(upper=upper, exclaim=exclaim)
    observed: list[tuple[str, float]] = []
    lines: list[str] = []
    wf = workflow(caller, [{"name": "one", "function": "upper"},
                           {"name": "two", "function": "exclaim", "method": "put",
                            "path": "/loud?n=2"}], observed=observed, log_lines=lines)
    result = asyncio.run(wf.run(request(), 10))
    assert (result.status, result.body, result.content_type) == (201, b"HELLO!", "text/x-loud")
    assert result.headers["X-Step"] == "exclaim" and result.event_id == "ev-1"
    first, second = caller.calls[0][1], caller.calls[1][1]
    assert (first.method, first.path, first.fields, first.body) == ("POST", "/", {}, b"hello")
    assert (second.method, second.path, second.fields) == ("PUT", "/loud", {"n": "2"})
    assert (second.body, second.content_type) == (b"HELLO", "text/x-upper")
    # The request's headers pass through; those describing its body follow the new body.
    assert second.headers == {"X-User": "u1", "Content-Type": "text/x-upper"}
    assert first.id != second.id != "ev-1"
    assert [name for name, _ in observed] == ["one", "two"]
    logged = [json.loads(line)["with"] for line in lines]
    assert [(r["workflow"], r["step"], r["status"]) for r in logged] == [("wf", "one", 200),
                                                                         ("wf", "two", 201)]
    assert all(isinstance(r["ms"], float) for r in logged)


def test_a_failing_step_stops_the_chain() -> None:
    caller = FakeCaller(upper=upper, refuse=refuse, exclaim=exclaim)
    wf = workflow(caller, [{"name": "a", "function": "upper"},
                           {"name": "b", "function": "refuse"},
                           {"name": "c", "function": "exclaim"}])
    result = asyncio.run(wf.run(request(), None))
    assert (result.status, result.body) == (422, b'{"error":"no"}')
    assert result.headers["X-Workflow-Failed-Step"] == "b"
    assert result.headers["X-Why"] == "refused"
    assert [name for name, _, _ in caller.calls] == ["upper", "refuse"]  # c never called
    assert re.fullmatch(r"a;dur=[0-9.]+, b;dur=[0-9.]+", result.headers["Server-Timing"])


def test_server_timing_syntax() -> None:
    assert timing_token("resize image/v2") == "resize_image_v2"
    assert timing_token("a.b-c_d~e") == "a.b-c_d~e"
    header = server_timing([("x y", 0.0012345), ("z", 1.5)])
    assert header == "x_y;dur=1.234, z;dur=1500.000"
    token = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
    entry = rf"{token};dur=[0-9]+(\.[0-9]+)?"
    assert re.fullmatch(rf"{entry}(, {entry})*", header)


def test_timeouts_step_budget_and_exhausted_budget() -> None:
    async def slow(event: RawEvent) -> RawResponse:
        await asyncio.sleep(0.3)
        return RawResponse(200, {}, b"late", "text/plain")

    caller = FakeCaller(upper=upper, slow=slow)
    wf = workflow(caller, [{"name": "a", "function": "upper", "timeout": "2s"},
                           {"name": "b", "function": "slow"},
                           {"name": "c", "function": "upper"}], timeout=0.2)
    result = asyncio.run(wf.run(request(), 30))
    timeouts = [t for _, _, t in caller.calls]
    assert timeouts[0] is not None and timeouts[0] <= 0.2  # the step's 2 s capped by 0.2 s
    assert timeouts[1] is not None and timeouts[1] <= 0.2
    # The fake does not enforce timeouts, so step b answers late and c finds no time left.
    assert result.status == 504 and result.headers["X-Workflow-Failed-Step"] == "c"
    assert len(caller.calls) == 2


def test_no_timeout_anywhere_means_none() -> None:
    caller = FakeCaller(upper=upper)
    asyncio.run(workflow(caller, [{"name": "a", "function": "upper"}]).run(request(), None))
    assert caller.calls[0][2] is None


def test_a_nested_workflows_headers_are_replaced_not_duplicated() -> None:
    inner = RawResponse(200, {"server-timing": "x;dur=1", "x-workflow-failed-step": "old"},
                        b"ok", "text/plain")
    caller = FakeCaller(inner=lambda e: inner)
    result = asyncio.run(workflow(caller, [{"name": "s", "function": "inner"}]).run(request(),
                                                                                     5))
    timing = [k for k in result.headers if k.lower() == "server-timing"]
    assert timing == ["Server-Timing"] and result.headers["Server-Timing"].startswith("s;dur=")


def test_unreachable_step_is_a_failed_step() -> None:
    caller = FakeCaller(gone=lambda e: error_response(502, "function 'gone' is unreachable"))
    result = asyncio.run(workflow(caller, [{"name": "s", "function": "gone"}]).run(request(), 5))
    assert result.status == 502 and result.headers["X-Workflow-Failed-Step"] == "s"


@pytest.mark.parametrize(("raw", "where"), [
    ({"steps": []}, "spec.workflow.steps: a workflow needs at least one step"),
    ({}, "spec.workflow.steps: a workflow needs at least one step"),
    ("oops", "spec.workflow: expected a mapping"),
    ({"steps": [{"name": "a", "function": "f"}, {"name": "b"}]},
     "spec.workflow.steps[1].function: is required"),
    ({"steps": [{"function": "f"}]}, "spec.workflow.steps[0].name: is required"),
    ({"steps": [{"name": "a", "function": "f"}, {"name": "a", "function": "g"}]},
     "spec.workflow.steps[1].name: 'a' is already the name of spec.workflow.steps[0]"),
    ({"steps": [{"name": "a", "function": 3}]}, "spec.workflow.steps[0].function:"),
    ({"steps": [{"name": "a", "function": "f", "timeout": "soon"}]},
     "spec.workflow.steps[0].timeout:"),
    ({"steps": [{"name": "a", "function": "f", "path": "x"}]}, "spec.workflow.steps[0].path:"),
    ({"steps": [{"name": "a", "function": "f", "method": "GE T"}]},
     "spec.workflow.steps[0].method:"),
    ({"steps": [{"name": "a", "function": "f", "fucntion": "g"}]},
     "spec.workflow.steps[0].fucntion:"),
    ({"steps": "a,b"}, "spec.workflow.steps:"),
    ({"steps": [{"name": "a", "function": "f"}], "timeout": 0}, "spec.workflow.timeout:"),
])
def test_config_errors_name_the_yaml_path(raw: Any, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_workflow(raw, "spec.workflow")
    assert str(info.value).startswith(where), str(info.value)


def test_defaults_and_durations() -> None:
    spec = parse_workflow({"steps": [{"name": "a", "function": "f", "timeout": "1.5s"},
                                     {"name": "b", "function": "g", "timeout": 2}],
                           "timeout": "1m"}, "spec.workflow")
    a, b = spec.steps
    assert (a.method, a.path, a.timeout, b.timeout, spec.timeout) == ("POST", "/", 1.5, 2.0,
                                                                      60.0)


def test_check_targets_names_the_unknown_step() -> None:
    spec = parse_workflow({"steps": [{"name": "a", "function": "here"},
                                     {"name": "b", "function": "nowhere"}]}, "spec.workflow")
    check_targets(spec, "spec.workflow", lambda name: True)
    with pytest.raises(ConfigError, match=r"^spec\.workflow\.steps\[1\]\.function: .*'nowhere'"):
        check_targets(spec, "spec.workflow", lambda name: name == "here")
