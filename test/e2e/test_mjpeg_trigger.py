"""The mjpeg trigger end to end: a real processor reading a real ffmpeg MJPEG source and
a camera of ours that misbehaves on purpose; loopback ports only."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from test.conftest import function_config, run_config_once
from test.mjpeg_support import FfmpegMjpegSource, ScriptedCamera, WebhookReceiver, encode_jpegs
from test.support import free_port

JPEGS = encode_jpegs(12)


def mjpeg_config(url: str, *, workers: int = 1, env: dict[str, str] | None = None,
                 handler: str = "frames_record:handler", **attributes: Any) -> dict[str, Any]:
    cfg = function_config(handler, triggers={"cam": {
        "kind": "mjpeg", "numWorkers": workers, "attributes": {"url": url, **attributes}}},
        env=[{"name": k, "value": v} for k, v in (env or {}).items()])
    cfg["spec"]["disableDefaultHTTPTrigger"] = True
    return cfg


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def frames(proc: Any, name: str, **labels: str) -> float:
    """A frame counter of the mjpeg trigger; 0 for a reason never seen (not exported yet)."""
    full = f"nuclio_processor_{name}_total"
    if "reason" in labels and f'reason="{labels["reason"]}"' not in proc.metrics():
        return 0.0
    return float(proc.metric(full, trigger_kind="mjpeg", **labels))


def test_ffmpeg_camera_every_nth_frame_and_reconnect(start_processor: Any, tmp_path: Path
                                                     ) -> None:
    out = tmp_path / "frames.jsonl"
    # Without -content_type ffmpeg says application/octet-stream: the boundary is learned.
    with FfmpegMjpegSource(free_port(), rate=10, content_type=False) as camera:
        proc = start_processor(mjpeg_config(camera.url, processing_factor=3,
                                            reconnect_delay="200ms",
                                            env={"FRAMES_OUT": str(out)}))
        wait_until(lambda: len(records(out)) >= 6, 10, "6 processed frames")
        camera.disconnect()  # the camera vanishes; another ffmpeg starts listening
        before = len(records(out))
        wait_until(lambda: len(records(out)) >= before + 6, 10, "frames after the reconnect")
        assert frames(proc, "frame_source_reconnects") >= 1
    time.sleep(0.5)  # the camera is gone: the counters stand still
    seen = records(out)
    read = frames(proc, "frames_read")
    nums = [r["frame_num"] for r in seen]
    assert nums == list(range(0, 3 * len(nums), 3)), nums  # every 3rd, across the reconnect
    assert len(seen) == -(-read // 3)  # frames 0, 3, 6, ... of those read
    now = time.time()
    for record in seen:
        assert record["content_type"] == "image/jpeg" and record["soi"] == "ffd8"
        assert record["url"] == camera.url
        assert now - 30 < record["timestamp"] <= record["done_at"]
    stamps = [r["timestamp"] for r in seen]
    assert stamps == sorted(stamps)
    assert camera.started >= 2


def test_several_workers_process_in_parallel_yet_the_sink_gets_frame_order(
        start_processor: Any, tmp_path: Path) -> None:
    out, received = tmp_path / "frames.jsonl", tmp_path / "webhook.jsonl"
    with FfmpegMjpegSource(free_port(), rate=10) as camera, WebhookReceiver(received) as hook:
        proc = start_processor(mjpeg_config(
            camera.url, workers=4, sink={"kind": "webhook", "attributes": {
                "url": hook.url(), "maxInFlight": 1}},
            env={"FRAMES_OUT": str(out), "FRAMES_DELAY": "0.3", "FRAMES_SHUFFLE": "1"}))
        wait_until(lambda: len(records(received)) >= 20, 15, "20 frames at the webhook")
        done_order = [r["frame_num"] for r in records(out)]
        sent_order = [r["frame_num"] for r in records(received)]
        assert frames(proc, "frames_dropped") == 0  # 4 workers keep up with 10 fps
    assert done_order != sorted(done_order), "frames should finish out of order"
    assert sent_order == sorted(sent_order) and len(set(sent_order)) == len(sent_order)
    assert sent_order == list(range(len(sent_order)))  # none lost on the way


def test_failing_and_empty_results_send_nothing_and_are_counted(start_processor: Any,
                                                                tmp_path: Path) -> None:
    received = tmp_path / "webhook.jsonl"
    with WebhookReceiver(received) as hook:
        with FfmpegMjpegSource(free_port(), rate=10) as camera:
            proc = start_processor(mjpeg_config(
                camera.url, sink={"kind": "webhook", "attributes": {"url": hook.url(),
                                                                    "maxInFlight": 1}},
                env={"FRAMES_FAIL_EVERY": "3", "FRAMES_EMPTY_EVERY": "4"}))
            wait_until(lambda: frames(proc, "frames_processed") >= 13, 10, "13 frames")
        time.sleep(0.5)  # the camera is gone: the counters stand still
        processed = frames(proc, "frames_processed")
        errors = frames(proc, "frames_sink_skipped", reason="error")
        empty = frames(proc, "frames_sink_skipped", reason="empty")
        delivered = frames(proc, "frames_delivered")
        handled_failures = proc.metric("nuclio_processor_handled_events_total",
                                       trigger_kind="mjpeg", result="failure")
    sent = [r["frame_num"] for r in records(received)]
    # The handler counts its calls from 1: every 3rd raises, every 4th (not 3rd) gives None.
    assert all((n + 1) % 3 and (n + 1) % 4 for n in sent)
    assert sent == sorted(sent) and len(sent) == delivered
    assert errors == processed // 3 == handled_failures
    assert empty == processed // 4 - processed // 12
    assert delivered == processed - errors - empty


def test_misbehaving_camera_frames_survive_and_bad_parts_are_counted(
        start_processor: Any, tmp_path: Path) -> None:
    out = tmp_path / "frames.jsonl"
    with ScriptedCamera(free_port(), JPEGS) as camera:
        proc = start_processor(mjpeg_config(camera.url("/quirky"), reconnect_delay="30s",
                                            reconnect_max_delay="30s",
                                            env={"FRAMES_OUT": str(out)}))
        wait_until(lambda: frames(proc, "frames_dropped", reason="garbage") >= 1
                   and len(records(out)) >= 6, 10, "the quirky script")
        time.sleep(0.3)
        got = [r["md5"] for r in records(out)]
        dropped = {reason: frames(proc, "frames_dropped", reason=reason)
                   for reason in ("truncated", "not_jpeg", "garbage")}
    expected = [hashlib.md5(JPEGS[i]).hexdigest() for i in (0, 1, 2, 4, 5, 6)]
    assert got == expected
    assert dropped == {"truncated": 1, "not_jpeg": 1, "garbage": 1}


def test_a_camera_that_cuts_mid_frame_is_reconnected_with_monotonic_frame_num(
        start_processor: Any, tmp_path: Path) -> None:
    out = tmp_path / "frames.jsonl"
    with ScriptedCamera(free_port(), JPEGS) as camera:
        url = camera.url("/cut?after=5").replace("://", "://user:s3cret@")
        proc = start_processor(mjpeg_config(url, reconnect_delay="100ms",
                                            env={"FRAMES_OUT": str(out)}))
        wait_until(lambda: camera.connections.get("/cut", 0) >= 3 and len(records(out)) >= 15,
                   10, "three connections")
        time.sleep(0.2)
        seen = records(out)
        assert frames(proc, "frames_dropped", reason="truncated") >= 2
        assert frames(proc, "frame_source_reconnects") >= 2
        ready = requests.get(f"http://127.0.0.1:{proc.health_port}/ready", timeout=5).text
    assert [r["frame_num"] for r in seen] == list(range(len(seen)))
    # The credentials reach the camera (basic auth) but not events, logs or /ready.
    assert camera.authorization[0] == "Basic dXNlcjpzM2NyZXQ="
    assert {r["url"] for r in seen} == {camera.url("/cut?after=5")}
    assert "s3cret" not in ready and "s3cret" not in proc.logs


def test_a_stalled_camera_is_reconnected_after_the_read_timeout(start_processor: Any,
                                                                tmp_path: Path) -> None:
    out = tmp_path / "frames.jsonl"
    with ScriptedCamera(free_port(), JPEGS) as camera:
        proc = start_processor(mjpeg_config(camera.url("/stall?after=3"), read_timeout="500ms",
                                            reconnect_delay="100ms",
                                            env={"FRAMES_OUT": str(out)}))
        started = time.monotonic()
        wait_until(lambda: camera.connections.get("/stall", 0) >= 2, 5, "a reconnect")
        assert time.monotonic() - started >= 0.5
        wait_until(lambda: len(records(out)) >= 6, 5, "frames from the second connection")
        details = requests.get(f"http://127.0.0.1:{proc.health_port}/ready", timeout=5).json()
        source = details["triggers"]["cam"]["source"]
        assert source["reconnects"] >= 1 and "timeout" in source["last_error"]
    assert [r["frame_num"] for r in records(out)][:6] == list(range(6))


def test_a_slow_handler_drops_frames_and_keeps_the_newest(start_processor: Any,
                                                          tmp_path: Path) -> None:
    out = tmp_path / "frames.jsonl"
    with ScriptedCamera(free_port(), JPEGS) as camera:
        proc = start_processor(mjpeg_config(camera.url("/stream?fps=40"),
                                            env={"FRAMES_OUT": str(out), "FRAMES_DELAY": "0.2"}))
        wait_until(lambda: len(records(out)) >= 10, 10, "10 slow frames")
        seen = records(out)
        superseded = frames(proc, "frames_dropped", reason="superseded")
        processed = frames(proc, "frames_processed")
        read = frames(proc, "frames_read")
        text = proc.metrics()
    assert superseded >= 3 * processed  # ~40 fps in, ~5 fps out
    assert read >= processed + superseded
    # Each processed frame was the freshest when a worker freed up: its wait for the worker
    # is at most one handler run, however far behind the camera the handler is.
    for record in seen[1:]:
        assert record["done_at"] - record["timestamp"] < 0.2 + 0.4, record  # not seconds
    count = float(_sample(text, "nuclio_processor_frame_latency_seconds_count"))
    total = float(_sample(text, "nuclio_processor_frame_latency_seconds_sum"))
    assert count >= 10 and total / count < 0.5


def _sample(text: str, name: str) -> str:
    for line in text.splitlines():
        if line.startswith(name + "{") and 'trigger_kind="mjpeg"' in line:
            return line.rsplit(" ", 1)[1]
    raise AssertionError(f"{name} not exported")


BAD_CONFIGS = [
    ({}, "spec.triggers.cam.attributes.url"),
    ({"url": "rtsp://camera/stream"}, "spec.triggers.cam.attributes.url"),
    ({"processing_factor": 0}, "spec.triggers.cam.attributes.processing_factor"),
    ({"drop_policy": "random"}, "spec.triggers.cam.attributes.drop_policy"),
    ({"read_timeout": "soon"}, "spec.triggers.cam.attributes.read_timeout"),
    ({"sink": {"kind": "carrier-pigeon"}}, "spec.triggers.cam.attributes.sink.kind"),
    ({"sink": {"kind": "mjpeg", "attributes": {"path": "stream"}}},
     "spec.triggers.cam.attributes.sink.attributes.path"),
    ({"sink": {"kind": "mjpeg", "attributes": {"port": 70000}}},
     "spec.triggers.cam.attributes.sink.attributes.port"),
    ({"sink": {"kind": "websocket", "attributes": {"url": "http://x/ws"}}},
     "spec.triggers.cam.attributes.sink.attributes.url"),
    ({"sink": {"kind": "websocket", "attributes": {"url": "ws://x/ws", "messageType": "xml"}}},
     "spec.triggers.cam.attributes.sink.attributes.messageType"),
    ({"sink": {"kind": "webhook", "attributes": {}}},
     "spec.triggers.cam.attributes.sink.attributes.url"),
    ({"sink": {"kind": "webhook", "attributes": {"url": "http://x/", "maxRetries": -1}}},
     "spec.triggers.cam.attributes.sink.attributes.maxRetries"),
    ({"sink": {"kind": "webhook", "attributes": {"url": "http://x/", "timeout": "fast"}}},
     "spec.triggers.cam.attributes.sink.attributes.timeout"),
]


@pytest.mark.parametrize(("attributes", "yaml_path"), BAD_CONFIGS,
                         ids=[path.rsplit(".", 1)[1] + "-" + str(i)
                              for i, (_, path) in enumerate(BAD_CONFIGS)])
def test_bad_trigger_and_sink_attributes_exit_2_naming_the_yaml_path(
        tmp_path: Path, attributes: dict[str, Any], yaml_path: str) -> None:
    cfg = mjpeg_config("http://127.0.0.1:9/stream")
    cfg["spec"]["triggers"]["cam"]["attributes"] = {"url": "http://127.0.0.1:9/stream",
                                                    **attributes}
    if "url" not in attributes and yaml_path.endswith("attributes.url") and \
            ".sink." not in yaml_path:
        del cfg["spec"]["triggers"]["cam"]["attributes"]["url"]
    result = run_config_once(tmp_path, cfg)
    assert result.returncode == 2, result.stdout + result.stderr
    assert yaml_path in result.stdout + result.stderr
