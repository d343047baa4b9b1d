"""The small parts of a call between functions: the event a handler's ``call_function``
sends, the ``nuclio_sdk.Response`` it gets back, and the hop the processor's caller makes
(depth, trace, target) before it runs the callee in a real ``WorkerPool``."""

from __future__ import annotations

import asyncio
from typing import Any

import nuclio_sdk

from fusion.calls import CALL_DEPTH_HEADER
from fusion.local import FunctionCaller, LocalTarget
from runtime.calls import to_call_event, to_sdk_response
from runtime.events import RawEvent
from runtime.logger import Logger, event_headers
from runtime.pool import WorkerPool
from runtime.responses import RawResponse

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{TRACE}-b7ad6b7169203331-01"


def test_a_dict_body_is_sent_as_json_and_the_trace_and_depth_are_inherited() -> None:
    token = event_headers.set({"traceparent": PARENT, "X-Nuclio-Call-Depth": "3",
                               "Authorization": "secret"})
    try:
        raw = to_call_event("b", nuclio_sdk.Event(body={"k": 1}, path="/p", method="put",
                                                  headers={"Content-Length": "9", "X-A": 1}))
    finally:
        event_headers.reset(token)
    assert (raw.body, raw.content_type, raw.method, raw.path) == (
        b'{"k":1}', "application/json", "PUT", "/p")
    assert raw.headers["traceparent"] == PARENT
    assert raw.headers["x-nuclio-call-depth"] == "3"
    assert raw.headers["X-A"] == "1" and raw.headers["Content-Type"] == "application/json"
    assert "Content-Length" not in raw.headers and "Authorization" not in raw.headers


def test_the_response_is_nuclios_shape() -> None:
    json_answer = to_sdk_response(RawResponse(201, {"X-Thing": "1", "Date": "now"}, b'{"a":1}',
                                              "application/json"))
    assert isinstance(json_answer, nuclio_sdk.Response)
    assert (json_answer.status_code, json_answer.body, json_answer.content_type) == (
        201, {"a": 1}, "application/json")
    assert json_answer.headers == {"x-thing": "1", "content-type": "application/json"}
    binary = to_sdk_response(RawResponse(404, {}, b"\x00\x01", "application/octet-stream"))
    assert (binary.status_code, binary.body) == (404, b"\x00\x01")


class _Echo:
    """A worker that answers with the headers its event arrived with."""

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id

    async def load(self) -> None: ...

    async def init(self) -> None: ...

    async def run(self, payload: Any, timeout: float | None) -> RawResponse:
        await asyncio.sleep(float(payload.fields.get("sleep", 0)))
        return RawResponse(200, dict(payload.headers), payload.body, "text/plain", payload.id)

    async def stop(self, timeout: float) -> None: ...

    def kill(self) -> None: ...


def _event(headers: dict[str, str], fields: dict[str, Any] | None = None) -> RawEvent:
    return RawEvent("e", b"x", "text/plain", headers, fields or {}, "POST", "/", "/", 0.0,
                    "http", "caller")


def test_the_hop_and_its_limits() -> None:
    async def scenario() -> list[RawResponse]:
        logger = Logger("test", 100)
        pool = WorkerPool("http", _Echo, 1, availability_timeout=0.2, event_timeout=None,
                          max_waiting=4, logger=logger)
        await pool.load()
        await pool.init()
        caller = FunctionCaller({"b": LocalTarget(pool.submit, "http", "http", 1)}, None,
                                lambda name: False, 4, logger)
        return [await caller.call("b", _event({"traceparent": PARENT}), None),
                await caller.call("b", _event({CALL_DEPTH_HEADER: "2"}), None),
                await caller.call("b", _event({CALL_DEPTH_HEADER: "3"}), None),
                await caller.call("nobody", _event({}), None),
                await caller.call("b", _event({}, {"sleep": "1"}), 0.1)]

    first, deepest, too_deep, unknown, late = asyncio.run(scenario())
    assert first.headers[CALL_DEPTH_HEADER] == "1"
    assert first.headers["traceparent"].startswith(f"00-{TRACE}-")
    assert first.headers["traceparent"] != PARENT
    assert first.headers["X-Nuclio-Target"] == "b"
    assert deepest.status == 200 and deepest.headers[CALL_DEPTH_HEADER] == "3"
    assert too_deep.status == 508
    assert unknown.status == 404
    assert late.status == 504
