"""The status API on the health address: /api/status, /api/events (SSE), /api/preview.

A real processor with an http trigger (known traffic) and an mjpeg trigger reading a
real ffmpeg camera whose URL carries user:password, with a webhook sink whose URL
carries them too: the document must match /metrics and never show a credential.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
import requests

from test.conftest import function_config
from test.mjpeg_support import FfmpegMjpegSource
from test.status_support import Processor
from test.support import free_port, wait_for

SECRETS = ("s3cret-cam", "h00k-pass")


@pytest.fixture
def camera() -> Iterator[FfmpegMjpegSource]:
    with FfmpegMjpegSource(free_port(), size="320x240", rate=10) as source:
        yield source


def pipeline_config(camera_url: str, http_port: int, hook_port: int) -> dict[str, Any]:
    cfg = function_config("status_mixed:handler", port=http_port, workers=2, name="status-fn")
    cfg["metadata"]["namespace"] = "vision"
    cfg["spec"]["triggers"]["cam"] = {
        "kind": "mjpeg", "numWorkers": 1,
        "attributes": {"url": camera_url.replace("http://", "http://viewer:s3cret-cam@"),
                       "sink": {"kind": "webhook", "attributes": {
                           "url": f"http://hook:h00k-pass@127.0.0.1:{hook_port}/in",
                           "max_retries": 0}}}}
    return cfg


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    started: list[Processor] = []

    def run(config: dict[str, Any], dashboard: dict[str, Any] | None = None) -> Processor:
        workdir = tmp_path / f"p{len(started)}"
        workdir.mkdir()
        started.append(Processor(workdir, config, dashboard))
        return started[-1]

    yield run
    for p in started:
        p.stop()


def trigger(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(t for t in doc["triggers"] if t["name"] == name)




def test_status_matches_metrics_and_hides_credentials(start, camera):
    http_port = free_port()
    cfg = pipeline_config(camera.url, http_port, free_port())
    proc = start(cfg)
    base = f"http://127.0.0.1:{http_port}"
    for _ in range(5):
        assert requests.get(base + "/ok", timeout=10).status_code == 200
    for _ in range(2):
        assert requests.get(base + "/raise", timeout=10).status_code == 500
    wait_for(lambda: trigger(proc.status(), "cam")["frames"]["delivered"] > 5, 10, "frames")
    time.sleep(1.5)  # at least one sampler tick after the traffic

    doc = proc.status()
    assert doc["function"] == {"name": "status-fn", "namespace": "vision",
                               "handler": "status_mixed:handler", "runtime": "python:3.11",
                               "worker_kind": doc["function"]["worker_kind"]}
    assert doc["function"]["worker_kind"] in ("process", "thread", "asyncio")
    assert doc["processor"]["pid"] == proc.proc.pid
    assert doc["processor"]["ready"] is True and doc["processor"]["phase"] == "ready"
    assert doc["processor"]["uptime_seconds"] > 0
    assert sorted(t["name"] for t in doc["triggers"]) == ["cam", "http"]
    http, cam = trigger(doc, "http"), trigger(doc, "cam")
    assert (http["name"], http["kind"], http["state"]) == ("http", "http", "ready")
    assert http["listen"] == [f"127.0.0.1:{http_port}"]
    assert http["events"]["handled"] == {"success": 5, "failure": 2}
    for result, count in (("success", 5), ("failure", 2)):
        assert proc.metric("nuclio_processor_handled_events_total", trigger_id="http",
                           result=result) == count
    assert http["pool"] == {"size": 2, "busy": 0, "waiting": 0, "restarts": 0, "crashes": 0}
    assert http["latency"]["count"] == 7
    assert proc.metric("nuclio_processor_event_latency_seconds_count",
                       trigger_name="http") == 7
    assert http["latency"]["p50_ms"] > 0 and http["latency"]["p99_ms"] >= \
        http["latency"]["p50_ms"]
    assert 0 < http["rates"]["events_per_second"] <= 7 / 1.5 + 0.1
    assert http["rates"]["errors_per_second"] > 0
    assert http["frames"] is None and http["source"] is None and http["sink"] is None

    assert cam["kind"] == "mjpeg" and cam["state"] == "ready"
    assert cam["source"]["state"] == "connected"
    assert cam["source"]["url"] == camera.url  # without viewer:s3cret-cam
    frames = cam["frames"]
    metrics_read = proc.metric("nuclio_processor_frames_read_total", trigger_name="cam")
    assert 0 < frames["read"] <= metrics_read
    assert frames["delivered"] <= frames["processed"] <= frames["read"]
    assert 5 <= frames["input_fps"] <= 15, frames  # the camera sends 10 fps
    assert frames["processed_fps"] > 0
    assert frames["latency_p50_ms"] is not None
    assert cam["preview"] is True
    sink = cam["sink"]
    assert sink["kind"] == "webhook" and sink["url"] == \
        sink["url"].replace("hook:h00k-pass@", "")
    assert sink["sent"] == 0 and sum(sink["dropped"].values()) > 0  # nothing listens there

    # No credential anywhere: status, one SSE document, /ready, the page.
    texts = [requests.get(proc.url(p), timeout=5).text for p in ("/api/status", "/ready", "/")]
    with requests.get(proc.url("/api/events"), stream=True, timeout=5) as r:
        for line in r.iter_lines():
            if line.startswith(b"data: "):
                texts.append(line.decode())
                break
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


def test_events_stream_a_document_every_second(start, camera):
    http_port = free_port()
    cfg = pipeline_config(camera.url, http_port, free_port())
    proc = start(cfg)
    docs: list[dict[str, Any]] = []
    started = time.monotonic()
    with requests.get(proc.url("/api/events"), stream=True, timeout=5) as r:
        assert r.headers["Content-Type"] == "text/event-stream"
        for line in r.iter_lines():
            if line.startswith(b"data: "):
                docs.append(json.loads(line[6:]))
            if time.monotonic() - started > 3.5:
                break
    assert len(docs) >= 3, len(docs)
    reads = [trigger(d, "cam")["frames"]["read"] for d in docs]
    assert reads == sorted(reads) and reads[-1] > reads[0]  # live, not a repeated document
    assert docs[-1]["time"] - docs[0]["time"] >= 1.5


def test_preview_is_the_camera_frame_and_404_without_frames(start, camera):
    http_port = free_port()
    cfg = pipeline_config(camera.url, http_port, free_port())
    proc = start(cfg)
    assert requests.get(proc.url("/api/preview/http"), timeout=5).status_code == 404
    assert requests.get(proc.url("/api/preview/nope"), timeout=5).status_code == 404
    r = wait_for(lambda: (lambda x: x if x.status_code == 200 else None)(
        requests.get(proc.url("/api/preview/cam"), timeout=5)), 10, "a preview frame")
    assert r.headers["Content-Type"] == "image/jpeg"
    frame = next(av.open(io.BytesIO(r.content), format="mjpeg").decode(video=0))
    assert (frame.width, frame.height) == (320, 240)
    pixels = frame.to_ndarray(format="gray")
    assert pixels.std() > 20  # testsrc: colour bars and a counter, not a blank frame

    # The stream: multipart parts, at most 10 a second.
    parts, started = 0, time.monotonic()
    with requests.get(proc.url("/api/preview/cam?stream=1"), stream=True, timeout=5) as s:
        assert s.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        for chunk in s.iter_content(65536):
            parts += chunk.count(b"Content-Type: image/jpeg")
            if time.monotonic() - started > 2:
                break
    assert 3 <= parts <= 25, parts
    # Read-only.
    assert requests.post(proc.url("/api/status"), timeout=5).status_code == 405


def test_page_and_preview_can_be_turned_off(start, camera):
    cfg = pipeline_config(camera.url, free_port(), free_port())
    no_preview = start(cfg, {"enabled": True, "preview": False})
    assert requests.get(no_preview.url("/"), timeout=5).status_code == 200
    assert requests.get(no_preview.url("/api/preview/cam"), timeout=5).status_code == 404
    assert trigger(no_preview.status(), "cam")["preview"] is False

    cfg = pipeline_config(camera.url, free_port(), free_port())
    off = start(cfg, {"enabled": False})
    for path in ("/", "/dashboard", "/api/status", "/api/events", "/api/preview/cam"):
        assert requests.get(off.url(path), timeout=5).status_code == 404, path
    assert requests.get(off.url("/ready"), timeout=5).status_code == 200


def test_raw_rtsp_frames_are_previewed_as_jpeg(start):
    """``output: raw`` results are pixels: the preview encodes the newest one to JPEG."""
    from test.rtsp_support import GstSource, rtsp_function

    with GstSource("h264", 320, 240, 15) as source:
        cfg = rtsp_function("rtsp_passthrough:handler", source.url, free_port(),
                            trigger={"output": "raw", "raw_format": "rgb24"},
                            sink={"codec": "jpeg"})
        proc = start(cfg)
        cam = wait_for(lambda: (lambda t: t if t["frames"]["delivered"] > 3 else None)(
            trigger(proc.status(), "cam")), 15, "raw frames delivered")
        assert cam["source"]["state"] == "connected"
        r = requests.get(proc.url("/api/preview/cam"), timeout=5)
        assert r.status_code == 200 and r.headers["Content-Type"] == "image/jpeg"
        frame = next(av.open(io.BytesIO(r.content), format="mjpeg").decode(video=0))
        assert (frame.width, frame.height) == (320, 240)
        assert frame.to_ndarray(format="gray").std() > 20
