"""The mjpeg, websocket and webhook sinks end to end: a real processor fed by an MJPEG
camera (ffmpeg or ours), read by ffprobe and HTTP clients, sending to a real
``websockets`` server that restarts, and to a webhook receiver that fails on purpose."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import requests
from websockets.asyncio.server import ServerConnection, serve

from test.conftest import function_config
from test.e2e.test_mjpeg_trigger import frames, records, wait_until
from test.mjpeg_support import (
    FfmpegMjpegSource,
    ScriptedCamera,
    WebhookReceiver,
    encode_jpegs,
    read_mjpeg,
)
from test.support import free_port


def sink_config(url: str, sink: dict[str, Any], *, handler: str = "frames_passthrough:handler",
                env: dict[str, str] | None = None, **attributes: Any) -> dict[str, Any]:
    cfg = function_config(handler, triggers={"cam": {
        "kind": "mjpeg", "numWorkers": 1,
        "attributes": {"url": url, "sink": sink, **attributes}}},
        env=[{"name": k, "value": v} for k, v in (env or {}).items()])
    cfg["spec"]["disableDefaultHTTPTrigger"] = True
    return cfg


def sink_items(proc: Any, outcome: str, reason: str | None = None) -> float:
    """Items the sink sent or dropped (for a reason); 0 before the first one."""
    wanted = [f'outcome="{outcome}"'] + ([f'reason="{reason}"'] if reason else [])
    return sum(float(line.rsplit(" ", 1)[1]) for line in proc.metrics().splitlines()
               if line.startswith("nuclio_processor_sink_items_total{")
               and all(label in line for label in wanted))


def ready_details(proc: Any) -> dict[str, Any]:
    body = requests.get(f"http://127.0.0.1:{proc.health_port}/ready", timeout=5).json()
    return dict(body["triggers"]["cam"])


async def first_frames(url: str, count: int, timeout: float = 10.0) -> list[tuple[float, bytes]]:
    got: list[tuple[float, bytes]] = []

    async def read() -> None:
        async for arrived, jpeg in read_mjpeg(url):
            got.append((arrived, jpeg))
            if len(got) >= count:
                return
    await asyncio.wait_for(read(), timeout)
    return got


# -- mjpeg sink -------------------------------------------------------------------------------
def test_mjpeg_sink_is_a_stream_ffprobe_and_clients_can_read(start_processor: Any) -> None:
    port = free_port()
    stream = f"http://127.0.0.1:{port}/live"
    with FfmpegMjpegSource(free_port(), rate=10) as camera:
        proc = start_processor(sink_config(camera.url, {"kind": "mjpeg", "attributes": {
            "port": port, "host": "127.0.0.1", "path": "/live", "boundary": "--myframe"}}))
        probe = subprocess.run(
            ["ffprobe", "-v", "error", "-f", "mpjpeg", "-show_entries",
             "stream=codec_name,width,height", "-of", "default=nw=1", stream],
            capture_output=True, text=True, timeout=30)
        assert probe.returncode == 0, probe.stderr
        assert probe.stdout.split() == ["codec_name=mjpeg", "width=320", "height=240"]
        started = time.monotonic()
        got = asyncio.run(first_frames(stream, 15))
        elapsed = time.monotonic() - started
        head = requests.get(stream, stream=True, timeout=5)
        assert head.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=myframe"
        head.close()
        assert requests.get(f"http://127.0.0.1:{port}/other", timeout=5).status_code == 404
    assert elapsed < 15 / 10 + 1.0  # at the camera's pace
    assert all(jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9" for _, jpeg in got)
    assert len({hashlib.md5(jpeg).digest() for _, jpeg in got}) >= 14  # testsrc moves
    assert sink_items(proc, "sent") >= 15


def test_mjpeg_sink_gives_a_new_client_the_latest_frame_at_once(start_processor: Any) -> None:
    jpegs = encode_jpegs(4)
    port = free_port()
    with ScriptedCamera(free_port(), jpegs) as camera:
        # Three frames, then the camera stalls: no new frame will come for the client.
        proc = start_processor(sink_config(camera.url("/stall?after=3"), {
            "kind": "mjpeg", "attributes": {"port": port, "host": "127.0.0.1"}},
            read_timeout="60s"))
        wait_until(lambda: frames(proc, "frames_delivered") >= 3, 10, "three frames")
        assert sink_items(proc, "dropped", "no_clients") == 3
        started = time.monotonic()
        got = asyncio.run(first_frames(f"http://127.0.0.1:{port}/stream", 1, timeout=5))
        assert time.monotonic() - started < 1.0
    assert got[0][1] == jpegs[2]


def test_mjpeg_frames_read_in_one_burst_all_reach_the_sink_in_order(start_processor: Any
                                                                   ) -> None:
    """A camera that sends eight frames in one write (what it buffered while the network
    stalled): the trigger parses them together and the sink sends them on together, yet
    none is dropped for arriving at once and the client gets each, in order."""
    jpegs = encode_jpegs(8)
    port = free_port()
    with ScriptedCamera(free_port(), jpegs) as camera:
        proc = start_processor(sink_config(camera.url("/burst?every=0.3"), {
            "kind": "mjpeg", "attributes": {"port": port, "host": "127.0.0.1"}}))
        got = asyncio.run(first_frames(f"http://127.0.0.1:{port}/stream", 1 + 4 * 8))
        dropped = frames(proc, "frames_dropped")
        slow = sink_items(proc, "dropped", "slow_client")
    order = [jpegs.index(jpeg) for _, jpeg in got[1:]]  # after the latest frame, at once
    start = order.index(0)
    assert order[start:start + 24] == list(range(8)) * 3, order
    assert dropped == 0 and slow == 0


def test_mjpeg_sink_slow_client_does_not_slow_the_others(start_processor: Any) -> None:
    big = encode_jpegs(6, 640, 480, quality=2)  # large frames fill a stalled socket fast
    noisy = [j[:2] + b"\xff\xfe" + (60000).to_bytes(2, "big") + bytes(59998) + j[2:]
             for j in big]  # a 60 KB comment segment each: still valid JPEGs
    port = free_port()
    with ScriptedCamera(free_port(), noisy) as camera:
        proc = start_processor(sink_config(camera.url("/stream?fps=25"), {
            "kind": "mjpeg", "attributes": {"port": port, "host": "127.0.0.1"}}))
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))
        stalled.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
        try:
            time.sleep(0.5)
            sent_before = camera.sent.get("/stream", 0)
            started = time.monotonic()
            got = asyncio.run(first_frames(f"http://127.0.0.1:{port}/stream", 50, timeout=10))
            elapsed = time.monotonic() - started
            camera_frames = camera.sent.get("/stream", 0) - sent_before
            assert ready_details(proc)["sink"]["clients"] >= 1
            slow_drops = sink_items(proc, "dropped", "slow_client")
        finally:
            stalled.close()
    assert elapsed < 50 / 25 + 1.5, elapsed
    assert len(got) >= 0.9 * camera_frames - 2, (len(got), camera_frames)
    assert slow_drops > 10  # the stalled client lost frames, and only it


# -- websocket sink ---------------------------------------------------------------------------
def test_websocket_sink_retries_until_the_peer_is_up_and_after_it_restarts(
        start_processor: Any) -> None:
    port = free_port()
    with FfmpegMjpegSource(free_port(), rate=10) as camera:
        proc = start_processor(sink_config(
            camera.url, {"kind": "websocket", "attributes": {
                "url": f"ws://127.0.0.1:{port}/frames", "messageType": "text",
                "reconnectDelay": "100ms", "maxReconnectDelay": "300ms", "timeout": "2s"}},
            handler="frames_record:handler"))
        # The peer is down: the processor is ready anyway and counts what it cannot send.
        wait_until(lambda: sink_items(proc, "dropped", "disconnected") >= 5, 10,
                   "drops while disconnected")
        batches = asyncio.run(_two_server_lives(port))
        details = ready_details(proc)
        dropped = sink_items(proc, "dropped", "disconnected")
    first, second = ([json.loads(m)["frame_num"] for m in batch] for batch in batches)
    assert all(isinstance(m, str) for batch in batches for m in batch)  # text frames
    assert first == sorted(first) and second == sorted(second)
    assert len(first) >= 10 and len(second) >= 10
    assert second[0] > first[-1] + 3  # frames while the peer was down were dropped
    assert details["sink"]["connects"] >= 2
    assert dropped >= 10


def test_websocket_sink_sends_binary_frames(start_processor: Any) -> None:
    port = free_port()
    got: list[str | bytes] = []

    async def scenario() -> None:
        async def receive(ws: ServerConnection) -> None:
            async for message in ws:
                got.append(message)

        async with serve(receive, "127.0.0.1", port):
            proc = await asyncio.to_thread(start_processor, sink_config(
                camera.url, {"kind": "websocket", "attributes": {
                    "url": f"ws://127.0.0.1:{port}/frames"}}))
            deadline = time.monotonic() + 10
            while len(got) < 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert await asyncio.to_thread(sink_items, proc, "sent") >= 5

    with FfmpegMjpegSource(free_port(), rate=10) as camera:
        asyncio.run(scenario())
    assert len(got) >= 5
    assert all(isinstance(m, bytes) and m[:2] == b"\xff\xd8" and m[-2:] == b"\xff\xd9"
               for m in got)


async def _two_server_lives(port: int) -> list[list[str | bytes]]:
    batches: list[list[str | bytes]] = []
    for _life in range(2):
        got: list[str | bytes] = []

        async def receive(ws: ServerConnection, got: list[str | bytes] = got) -> None:
            async for message in ws:
                got.append(message)

        async with serve(receive, "127.0.0.1", port):
            deadline = time.monotonic() + 10
            while len(got) < 12 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        batches.append(got)
        await asyncio.sleep(1.0)  # down for a while: frames meanwhile are dropped
    return batches


# -- webhook sink -----------------------------------------------------------------------------
def test_webhook_sink_retries_failed_attempts_and_sends_metadata_headers(
        start_processor: Any, tmp_path: Path) -> None:
    received = tmp_path / "requests.jsonl"
    with FfmpegMjpegSource(free_port(), rate=10) as camera, \
            WebhookReceiver(received, fail_first=2, always_fail=4) as hook:
        proc = start_processor(sink_config(
            camera.url, {"kind": "webhook", "attributes": {
                "url": hook.url("/hook"), "method": "put", "headers": {"X-Api-Key": "k1"},
                "maxRetries": 3, "retryDelay": "50ms", "maxRetryDelay": "100ms"}},
            handler="frames_record:handler"))
        wait_until(lambda: sink_items(proc, "sent") >= 8
                   and sink_items(proc, "dropped", "failed") >= 2, 15, "webhook deliveries")
        sent, failed = sink_items(proc, "sent"), sink_items(proc, "dropped", "failed")
        time.sleep(0.3)
    seen = records(received)
    ok = [r for r in seen if r["status"] == 200]
    assert len(ok) >= sent >= 8
    for request in ok:
        headers = request["headers"]
        assert request["attempt"] == 3  # two 503s first, retried
        assert request["method"] == "PUT" and request["path"] == "/hook"
        assert headers["X-Api-Key"] == "k1"
        assert headers["Content-Type"] == "application/json"
        assert int(headers["X-Nuclio-Frame-Num"]) == request["frame_num"]
        assert float(headers["X-Nuclio-Timestamp"]) == request["timestamp"]
        assert headers["X-Nuclio-Url"] == camera.url
        assert request["frame_num"] % 4 != 0
    attempts: dict[int, int] = {}
    for request in seen:
        num = int(request["headers"]["X-Nuclio-Frame-Num"])
        attempts[num] = attempts.get(num, 0) + 1
    given_up = [num for num, count in attempts.items() if num % 4 == 0 and count == 4]
    assert len(given_up) >= failed >= 2  # 1 + maxRetries attempts, then counted as failed
