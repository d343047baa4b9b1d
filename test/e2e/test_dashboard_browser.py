"""The live page in a real browser: headless Chromium (Debian's) over the DevTools
protocol, a real ffmpeg MJPEG camera feeding an mjpeg trigger, HTTP traffic on an http
trigger. The page must render without console errors, its counters must move, the
preview must be a real camera frame, the camera's badge must follow the camera going
away and coming back, and the page must reconnect to a restarted processor.
"""

from __future__ import annotations

import io
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
import requests

from test.conftest import ROOT, function_config
from test.mjpeg_support import FfmpegMjpegSource
from test.status_support import Chromium, Processor
from test.support import free_port
from test.support import wait_for as wait_until

# The README's screenshot is refreshed with DASHBOARD_SCREENSHOT=docs/dashboard.png; the
# test always keeps one as an artifact in its tmp dir.
SCREENSHOT = os.environ.get("DASHBOARD_SCREENSHOT")


def dashboard_config(camera_url: str, http_port: int, sink_port: int) -> dict[str, Any]:
    cfg = function_config("status_mixed:handler", port=http_port, workers=2, name="vision-demo")
    cfg["metadata"]["namespace"] = "edge"
    cfg["spec"]["triggers"]["cam"] = {
        "kind": "mjpeg", "numWorkers": 1,
        "attributes": {"url": camera_url, "reconnect_delay": "300ms",
                       "reconnect_max_delay": "600ms",
                       "sink": {"kind": "mjpeg", "attributes": {
                           "port": sink_port, "host": "127.0.0.1", "path": "/out"}}}}
    return cfg


class Traffic:
    """Background HTTP requests (and a player on the mjpeg sink) while the page runs."""

    def __init__(self, http_port: int, sink_port: int) -> None:
        self._stop = threading.Event()
        self.sent = 0
        self._threads = [threading.Thread(target=self._requests, args=(http_port,), daemon=True),
                         threading.Thread(target=self._player, args=(sink_port,), daemon=True)]
        for t in self._threads:
            t.start()

    def _requests(self, port: int) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                path = "/raise" if self.sent % 10 == 9 else "/ok"
                try:
                    session.get(f"http://127.0.0.1:{port}{path}", timeout=5)
                    self.sent += 1
                except requests.RequestException:
                    time.sleep(0.1)
                time.sleep(0.02)

    def _player(self, port: int) -> None:
        while not self._stop.is_set():
            try:
                with requests.get(f"http://127.0.0.1:{port}/out", stream=True, timeout=5) as r:
                    for _ in r.iter_content(65536):
                        if self._stop.is_set():
                            return
            except requests.RequestException:
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)




@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Chromium]:
    chromium = Chromium(tmp_path / "profile")
    yield chromium
    chromium.close()


def field(browser: Chromium, trigger: str, name: str) -> str:
    return str(browser.evaluate(
        f"(document.querySelector('[data-trigger=\"{trigger}\"] [data-field=\"{name}\"]')"
        f" || {{textContent: ''}}).textContent"))


def number(browser: Chromium, trigger: str, name: str) -> float:
    text = field(browser, trigger, name).replace(",", "")
    return float(text) if text not in ("", "\u2013") else -1.0


def test_live_page_in_chromium(tmp_path: Path, browser: Chromium) -> None:
    camera_port, http_port, sink_port = free_port(), free_port(), free_port()
    camera = FfmpegMjpegSource(camera_port, size="320x240", rate=10).__enter__()
    health, metrics = free_port(), free_port()
    proc = Processor(tmp_path / "p1", dashboard_config(camera.url, http_port, sink_port), None,
                     health=health, metrics=metrics)
    traffic = Traffic(http_port, sink_port)
    try:
        browser.navigate(proc.url("/"))
        wait_until(lambda: number(browser, "cam", "frames_read") > 0, 10, "frames on the page")
        assert browser.evaluate("document.getElementById('conn').textContent") == "live"
        assert field(browser, "cam", "source_state") == "connected"
        assert field(browser, "http", "state") == "ready"

        # Counters shown in the DOM move between two reads.
        handled0 = number(browser, "http", "events_handled")
        frames0 = number(browser, "cam", "frames_read")
        time.sleep(2.5)
        assert number(browser, "http", "events_handled") > handled0 >= 0
        assert number(browser, "cam", "frames_read") > frames0 > 0
        assert number(browser, "http", "events_rate") > 0
        assert number(browser, "cam", "input_fps") > 0

        # The preview <img> holds a decoded frame of the camera's size.
        size = wait_until(lambda: browser.evaluate(
            "(() => { const i = document.querySelector('[data-trigger=\"cam\"] img');"
            " return i && i.complete && i.naturalWidth ? [i.naturalWidth, i.naturalHeight]"
            " : null })()"), 10, "the preview image")
        assert size == [320, 240]
        jpeg = requests.get(proc.url("/api/preview/cam"), timeout=5).content
        frame = next(av.open(io.BytesIO(jpeg), format="mjpeg").decode(video=0))
        assert (frame.width, frame.height) == (320, 240)
        assert frame.to_ndarray(format="gray").std() > 20  # not a blank frame
        wait_until(lambda: "clients 1" in field(browser, "cam", "sink"), 5, "the sink's player")

        time.sleep(float(os.environ.get("DASHBOARD_SCREENSHOT_DELAY", "1")))
        shot = browser.screenshot(tmp_path / "dashboard.png")
        assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000  # not an empty page
        if SCREENSHOT:
            (ROOT / SCREENSHOT).write_bytes(shot)
        assert browser.console_errors() == []

        # The camera goes away: its badge says so within 3 s; it comes back.
        camera.__exit__(None, None, None)
        gone = time.monotonic()
        state = wait_until(lambda: (lambda s: s if s in ("reconnecting", "down") else None)(
            field(browser, "cam", "source_state")), 3, "the camera badge to change")
        assert time.monotonic() - gone < 3, state
        wait_until(lambda: field(browser, "cam", "source_state") == "down", 5, "down")
        assert field(browser, "cam", "state") == "error"
        # The processor is retrying: it, not a port probe, must be ffmpeg's one client.
        camera = FfmpegMjpegSource(camera_port, size="320x240", rate=10).start()
        wait_until(lambda: field(browser, "cam", "source_state") == "connected", 8,
                   "the camera badge back to connected")
        assert browser.console_errors() == []

        # The processor restarts on the same ports: the page says "reconnecting", then
        # comes back live by itself (EventSource) with the new processor's data.
        old_pid = proc.proc.pid
        proc.stop()
        wait_until(lambda: browser.evaluate("document.getElementById('conn').textContent")
                   == "reconnecting", 5, "the page to say reconnecting")
        proc = Processor(tmp_path / "p2", dashboard_config(camera.url, http_port, sink_port),
                         None, health=health, metrics=metrics)
        wait_until(lambda: browser.evaluate("document.getElementById('conn').textContent")
                   == "live", 10, "the page to reconnect")
        wait_until(lambda: f"pid {proc.proc.pid}" in browser.evaluate(
            "document.getElementById('meta').textContent"), 5, "the new processor's pid")
        assert proc.proc.pid != old_pid
    finally:
        traffic.stop()
        proc.stop()
        camera.__exit__(None, None, None)
