"""``fusion.remote.RemoteCaller`` against a real processor on loopback.

The remote caller is what makes "apart" behave like "fused": every outcome a
local call can have (text, JSON, binary, the callee's 404 and 500, a timeout,
an unreachable callee) must come back as the same kind of response, and the
connection must be reused across calls, or each hop pays a TCP handshake.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import pytest

from fusion.remote import RemoteCaller
from fusion.tracing import parse
from runtime.events import RawEvent
from runtime.responses import RawResponse
from test.conftest import function_config
from test.support import free_port

TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def event(path: str, body: bytes = b"", content_type: str = "", method: str = "POST",
          fields: dict[str, Any] | None = None, headers: dict[str, Any] | None = None
          ) -> RawEvent:
    return RawEvent("id-1", body, content_type, headers or {}, fields or {}, method, path,
                    path, time.time(), "http", "http")


@pytest.fixture
def callee(start_processor: Any) -> str:
    port = free_port()
    start_processor(function_config("callee:handler", port=port, workers=4, name="callee"))
    return f"http://127.0.0.1:{port}"


def run(caller: RemoteCaller, *calls: tuple[str, RawEvent, float | None]
        ) -> list[RawResponse]:
    """The responses of ``calls`` made one after the other on one loop."""
    async def go() -> list[RawResponse]:
        try:
            return [await caller.call(*c) for c in calls]
        finally:
            await caller.close()

    return asyncio.run(go())


def test_text_json_binary_and_callee_errors(callee: str) -> None:
    caller = RemoteCaller({"callee": callee}, "default")
    text, js, binary, missing, raised = run(
        caller, ("callee", event("/text"), 10), ("callee", event("/json"), 10),
        ("callee", event("/binary"), 10), ("callee", event("/missing"), 10),
        ("callee", event("/raise"), 10))
    assert (text.status, text.body, text.content_type) == (200, b"plain text", "text/plain")
    assert js.status == 200 and json.loads(js.body) == {"a": 1, "list": [1, 2]}
    assert js.content_type.startswith("application/json")
    assert (binary.body, binary.content_type) == (b"\x00\xffbin", "application/x-bin")
    assert binary.headers == {"X-Kind": "binary"}  # the handler's, not the server's
    assert missing.status == 404 and json.loads(missing.body) == {"error": "no such thing"}
    assert raised.status == 500


def test_event_reaches_the_callee_as_sent(callee: str) -> None:
    caller = RemoteCaller({"callee": callee}, "default")
    sent = event("/echo/x", b'{"k": 1}', "application/json", "PUT", {"q": "1", "n": 2},
                 {"traceparent": TRACE, "X-Custom": "yes", "Host": "elsewhere:1",
                  "Content-Length": "999", "Connection": "close", "X-Nuclio-Call-Depth": "3"})
    (reply,) = run(caller, ("callee", sent, 10))
    seen = json.loads(reply.body)
    assert (seen["method"], seen["path"], seen["fields"]) == ("PUT", "/echo/x",
                                                              {"q": "1", "n": "2"})
    assert seen["content_type"] == "application/json" and seen["body"] == {"k": 1}
    headers = seen["headers"]
    assert headers["x-custom"] == "yes" and headers["x-nuclio-target"] == "callee"
    assert headers["x-nuclio-call-depth"] == "4"
    assert headers["host"] == callee.removeprefix("http://")  # not the sender's Host
    assert headers["content-length"] == "8"
    parent, child = parse(TRACE), parse(headers["traceparent"])
    assert parent is not None and child is not None
    assert child[0] == parent[0] and child[1] != parent[1]  # same trace, new span


def test_credentials_in_the_address_replace_the_clients(callee: str) -> None:
    with_user = callee.replace("http://", "http://fn:pw@")
    caller = RemoteCaller({"callee": with_user}, "default")
    (reply,) = run(caller, ("callee", event("/echo", headers={"Authorization": "Bearer x"}),
                            10))
    assert reply.status == 200, reply.body
    assert json.loads(reply.body)["headers"]["authorization"] == \
        "Basic " + base64.b64encode(b"fn:pw").decode()


def test_slow_callee_times_out_with_504(callee: str) -> None:
    caller = RemoteCaller({"callee": callee}, "default")
    started = time.monotonic()
    (reply,) = run(caller, ("callee", event("/slow", fields={"s": "3"}), 0.3))
    assert reply.status == 504 and "callee" in json.loads(reply.body)["error"]
    assert time.monotonic() - started < 2


def test_closed_port_is_502_naming_the_function_not_the_credentials() -> None:
    port = free_port()  # nothing listens there
    caller = RemoteCaller({"gone": f"http://user:s3cret@127.0.0.1:{port}"}, "default")
    (reply,) = run(caller, ("gone", event("/"), 5))
    assert reply.status == 502 and reply.content_type == "application/json"
    message = json.loads(reply.body)["error"]
    assert "'gone'" in message and "s3cret" not in message and "user" not in message


def test_env_url_and_depth_limit(callee: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUCLIO_FUNCTION_MY_CALLEE_URL", callee)
    caller = RemoteCaller({}, "default", max_depth=4)
    assert caller.knows("my-callee") and not caller.knows("other")
    assert caller.base_url("other") == "http://nuclio-default-other:8080"
    ok, deep = run(caller, ("my-callee", event("/text"), 10),
                        ("my-callee", event("/text", headers={"X-Nuclio-Call-Depth": "4"}), 10))
    assert ok.body == b"plain text" and deep.status == 508


async def _counting_proxy(target_port: int, accepted: list[int]) -> asyncio.Server:
    """A TCP relay to the callee that counts the connections it accepts (server side)."""
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(relay, "127.0.0.1", 0)


def test_keep_alive_one_connection_for_many_calls(callee: str) -> None:
    accepted: list[int] = []

    async def go() -> list[RawResponse]:
        proxy = await _counting_proxy(int(callee.rsplit(":", 1)[1]), accepted)
        port = proxy.sockets[0].getsockname()[1]
        caller = RemoteCaller({"callee": f"http://127.0.0.1:{port}"}, "default")
        try:
            return [await caller.call("callee", event("/text"), 10) for _ in range(20)]
        finally:
            await caller.close()
            proxy.close()

    replies = asyncio.run(go())
    assert [r.status for r in replies] == [200] * 20
    assert len(accepted) == 1  # one kept-alive connection served all twenty calls
