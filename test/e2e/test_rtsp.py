"""The rtsp trigger and the rtsp sink end to end: a GStreamer RTSP server as the source,
a real processor in between, ffprobe/ffmpeg as players of our sink; loopback only."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import requests
import yaml

from test.conftest import FUNCTIONS, run_processor_once
from test.rtsp_support import (
    GstSource,
    RawRtspClient,
    count_frames,
    decode_audio,
    decode_video,
    dominant_frequency,
    first_frame_rgb,
    gst_play_jpeg,
    probe,
    rtsp_function,
)
from test.support import free_port

HANDLER = "rtsp_passthrough:handler"
FPS = 15
SINK_ITEMS = "nuclio_processor_sink_items_total"
RAW_TYPE = "application/octet-stream"


def ready_details(proc: Any) -> dict[str, Any]:
    details: dict[str, Any] = requests.get(proc.url(proc.health_port, "/ready"),
                                           timeout=5).json()["triggers"]["cam"]
    return details


def handler_events(logs: str) -> list[dict[str, Any]]:
    """The fields the passthrough handler logged, one dict per event, in order."""
    events = []
    for line in logs.splitlines():
        if '"rtsp event"' in line:
            events.append(json.loads(line)["with"])
    return events


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_streaming(proc: Any, connects: int = 1, timeout: float = 15.0,
                   source: GstSource | None = None) -> None:
    def streaming() -> bool:
        source = ready_details(proc)["source"]
        return bool(source["state"] == "streaming" and source["connects"] >= connects)
    try:
        wait_for(streaming, timeout, f"the source to stream (connection {connects})")
    except AssertionError as exc:  # say what the processor saw, for a failure in CI
        raise AssertionError(f"{exc}; source: {ready_details(proc).get('source')}; "
                             f"{source.describe() if source else ''}; "
                             f"processor log tail:\n{proc.logs[-3000:]}") from None


def test_h264_source_to_jpeg_sink_two_players_both_transports(start_processor: Any) -> None:
    sink_port = free_port()
    with GstSource("h264", 320, 240, FPS) as source:
        proc = start_processor(rtsp_function(HANDLER, source.url, sink_port))
        wait_streaming(proc, source=source)
        url = f"rtsp://127.0.0.1:{sink_port}/stream"
        stream = probe(url)
        assert (stream["codec_name"], stream["width"], stream["height"]) == ("mjpeg", 320, 240)

        # Two players at once, one per transport; 3 s at 15 fps each.
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            tcp = pool.submit(decode_video, url, "tcp", 3.0)
            udp = pool.submit(decode_video, url, "udp", 3.0)
            (tcp_frames, tcp_errors), (udp_frames, udp_errors) = tcp.result(), udp.result()
        for frames, errors in ((tcp_frames, tcp_errors), (udp_frames, udp_errors)):
            assert 0.7 * 3 * FPS <= frames <= 1.3 * 3 * FPS + 2, (frames, errors)
            assert "error" not in errors.lower(), errors

        # GStreamer's RTSP client plays it too.
        for protocol in ("tcp", "udp"):
            played = gst_play_jpeg(url, protocol, 20)
            assert played.returncode == 0, played.stdout + played.stderr

        # The handler saw JPEGs with the documented fields.
        logs = proc.logs
        assert '"content_type": "image/jpeg"' in logs
        assert f'"url": "{source.url}"' in logs and '"width": 320' in logs
        assert '"height": 240' in logs and '"frame_num": 0,' in logs
        details = ready_details(proc)
        assert details["source"]["codec"] == "h264"
        assert details["frames"]["delivered"] > 3 * FPS
        assert proc.metric(SINK_ITEMS, sink_kind="rtsp", outcome="sent") >= 60

        # A clean stop while the source streams: exit 0, promptly.
        stopping = time.monotonic()
        assert proc.stop() == 0, proc.logs
        assert time.monotonic() - stopping < 5


def test_slow_player_does_not_slow_others_and_bad_requests_get_rtsp_errors(
        start_processor: Any) -> None:
    sink_port = free_port()
    with GstSource("h264", 640, 480, FPS, "snow") as source:  # noise: big JPEGs
        # Raw frames: the sink JPEG-encodes what the handler returns.
        proc = start_processor(rtsp_function(
            HANDLER, source.url, sink_port, trigger={"output": "raw"},
            sink={"max_buffer_bytes": 16384, "jpeg_quality": 95}))
        wait_streaming(proc, source=source)
        url = f"rtsp://127.0.0.1:{sink_port}/stream"

        bad = RawRtspClient(sink_port)
        assert bad.send_raw(b"HELLO\r\n\r\n")[0] == 400
        assert bad.request("DESCRIBE", f"rtsp://127.0.0.1:{sink_port}/nope")[0] == 404
        assert bad.request("RECORD", url)[0] == 501
        assert bad.request("PLAY", url, Session="nosuchsession")[0] == 454
        assert bad.request("SETUP", f"{url}/track0",
                           Transport="RTP/AVP;multicast;port=5000-5001")[0] == 461
        status, headers, sdp = bad.request("DESCRIBE", url, Accept="application/sdp")
        assert status == 200 and headers["content-type"] == "application/sdp"
        assert b"m=video 0 RTP/AVP 26" in sdp and b"a=rtpmap:26 JPEG/90000" in sdp
        bad.close()

        # A player that sets up, plays and never reads.
        stalled = RawRtspClient(sink_port, receive_buffer=4096)
        status, headers, _ = stalled.request("SETUP", f"{url}/track0",
                                             Transport="RTP/AVP/TCP;unicast;interleaved=0-1")
        assert status == 200 and "interleaved=0-1" in headers["transport"]
        session = headers["session"].split(";")[0]
        assert stalled.request("PLAY", url, Session=session)[0] == 200
        time.sleep(2.0)  # let its buffers fill up

        frames, errors = decode_video(url, "tcp", 3.0)
        assert frames >= 0.7 * 3 * FPS, (frames, errors)
        assert "error" not in errors.lower(), errors
        assert proc.metric(SINK_ITEMS, sink_kind="rtsp", outcome="dropped",
                           reason="slow_player") > 10
        sessions = ready_details(proc)["sink"]["sessions"]
        assert any(s["dropped"] > 10 for s in sessions), sessions
        stalled.close()


def test_mjpeg_source_to_h264_sink_with_late_players(start_processor: Any) -> None:
    sink_port, jpeg_port = free_port(), free_port()
    with GstSource("mjpeg", 320, 240, FPS) as source:
        # Every 3rd frame, raw, to the handler and back: the sink encodes them itself.
        # A second trigger passes the source's own JPEGs through to a JPEG sink.
        proc = start_processor(rtsp_function(
            HANDLER, source.url, sink_port,
            trigger={"output": "raw", "processing_factor": 3},
            sink={"codec": "h264", "keyframe_interval": 1000},
            extra_triggers={"pass": {"kind": "rtsp", "attributes": {
                "url": source.url,
                "sink": {"kind": "rtsp", "attributes": {"host": "127.0.0.1",
                                                        "port": jpeg_port}}}}}))
        wait_streaming(proc, source=source)
        jpeg_url = f"rtsp://127.0.0.1:{jpeg_port}/stream"
        frames, errors = decode_video(jpeg_url, "udp", 3.0)
        assert 0.7 * 3 * FPS <= frames <= 1.3 * 3 * FPS + 2, (frames, errors)
        assert "error" not in errors.lower(), errors
        health = requests.get(proc.url(proc.health_port, "/ready"), timeout=5).json()
        passed = health["triggers"]["pass"]["source"]
        assert passed["jpeg_passthrough"] is True and passed["decode_errors"] == 0, passed
        assert "jpeg_passthrough" not in ready_details(proc)["source"]  # raw needs decoding
        url = f"rtsp://127.0.0.1:{sink_port}/stream"
        stream = probe(url)
        assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 320, 240)
        assert ready_details(proc)["source"]["codec"] == "mjpeg"
        # Keyframes come every 1000 frames (200 s at 5 fps) by themselves: a player joining
        # now gets one at once (and the test ends in time) only because the sink forces it.
        for transport in ("tcp", "udp"):
            started = time.monotonic()
            frames, errors = decode_video(url, transport, 3.0)
            assert time.monotonic() - started < 15  # ffmpeg's probing, then 3 s of video
            assert 0.7 * 3 * FPS / 3 <= frames <= 1.3 * 3 * FPS / 3 + 2, (transport, frames)
            assert "error" not in errors.lower(), errors
        # Once encoding has started, DESCRIBE carries the parameter sets too.
        client = RawRtspClient(sink_port)
        status, _, sdp = client.request("DESCRIBE", url)
        client.close()
        assert status == 200 and b"a=rtpmap:96 H264/90000" in sdp, sdp
        assert b"packetization-mode=1" in sdp and b"sprop-parameter-sets=Z" in sdp, sdp
        logs = proc.logs
        raw = [e for e in handler_events(logs) if e["content_type"] == RAW_TYPE]
        assert {e["frame_num"] % 3 for e in raw} == {0} and len(raw) > 10
        assert '"format": "bgr24"' in logs and f'"size": {320 * 240 * 3}' in logs
        assert '"content_type": "application/octet-stream"' in logs


def test_l16_audio_resampled_and_served_as_l16(start_processor: Any) -> None:
    sink_port = free_port()
    # 44.1 kHz stereo 1 kHz tone in; the trigger resamples to 16 kHz mono.
    with GstSource("l16", 44100, 2, 1000) as source:
        proc = start_processor(rtsp_function(
            HANDLER, source.url, sink_port,
            trigger={"media_type": "audio", "sample_rate": 16000, "channels": 1,
                     "chunk_mode": "consecutive", "chunk_bytes": 3200},
            sink={"type": "audio", "sample_rate": 16000, "channels": 1},
            extra_triggers={"win": {  # the seed's sliding window, no sink
                "kind": "rtsp", "numWorkers": 1,
                "attributes": {"url": source.url, "media_type": "audio", "chunk_bytes": 3200,
                               "max_bytes": 16000, "trim_bytes": 3200,
                               "processing_interval": 200}}}))
        wait_streaming(proc, source=source)
        url = f"rtsp://127.0.0.1:{sink_port}/stream"
        stream = probe(url)
        assert (stream["codec_name"], stream["sample_rate"], stream["channels"]) == \
            ("pcm_s16be", "16000", 1)
        for transport in ("tcp", "udp"):
            samples = decode_audio(url, transport, 3.0)
            assert 0.9 * 3 * 16000 <= len(samples) <= 3 * 16000, len(samples)
            assert abs(dominant_frequency(samples, 16000) - 1000) < 5
            assert samples.std() > 5000  # the tone, not silence
        logs = proc.logs
        assert '"sample_rate": 16000' in logs and '"channels": 1' in logs
        assert '"size": 3200' in logs and '"content_type": "audio/L16"' in logs
        # Windows every 200 ms of audio (6400 bytes), growing up to max_bytes; past it,
        # trimmed 3200 bytes at a time, so between 12801 and 16000 bytes.
        sizes = [event["size"] for event in handler_events(logs) if event["size"] != 3200]
        assert len(sizes) >= 10 and all(s % 2 == 0 for s in sizes), sizes
        assert 6400 <= sizes[0] < 9600 and 12800 < sizes[-1] <= 16000, sizes


def test_h265_source_down_at_start_restarted_and_hung_keeps_processor_up(
        start_processor: Any) -> None:
    sink_port = free_port()
    source = GstSource("h265", 320, 240, FPS)
    try:
        # The latest frame every 200 ms: 5 of the source's 15 fps.
        proc = start_processor(rtsp_function(HANDLER, source.url, sink_port,
                                             trigger={"read_timeout": "2s",
                                                      "processing_interval": 200}))
        wait_for(lambda: "last_error" in ready_details(proc)["source"], 10.0,
                 "a failed first attempt")
        assert ready_details(proc)["source"]["state"] in ("down", "connecting")
        source.start()
        wait_streaming(proc, source=source)
        assert ready_details(proc)["source"]["codec"] == "hevc"
        url = f"rtsp://127.0.0.1:{sink_port}/stream"
        assert 7 <= count_frames(url, "tcp", 2.0) <= 13

        source.stop()
        wait_for(lambda: ready_details(proc)["source"]["state"] in ("down", "connecting"),
                 10.0, "the source to be seen down")
        ready = requests.get(proc.url(proc.health_port, "/ready"), timeout=5)
        assert ready.status_code == 200 and proc.proc.poll() is None
        assert ready.json()["triggers"]["cam"]["source"]["last_error"]

        source.start()
        wait_streaming(proc, connects=2, timeout=20.0, source=source)
        assert 7 <= count_frames(url, "udp", 2.0) <= 13

        # A source that hangs (connection open, nothing sent) is dropped after read_timeout.
        assert source.proc is not None
        source.proc.send_signal(signal.SIGSTOP)
        try:
            hung_at = time.monotonic()
            wait_for(lambda: ready_details(proc)["source"]["state"] in ("down", "connecting"),
                     10.0, "the hung source to be given up")
            assert time.monotonic() - hung_at >= 1.5  # not before read_timeout (2 s)
        finally:
            source.proc.send_signal(signal.SIGCONT)
        wait_streaming(proc, connects=3, timeout=20.0, source=source)
        reconnects = "nuclio_processor_frame_source_reconnects_total"
        assert proc.metric(reconnects, trigger_name="cam") == 2
        assert proc.metric("nuclio_processor_frames_read_total", trigger_name="cam") > 3 * FPS
        assert "RTSP source unavailable; retrying" in proc.logs \
            or "RTSP source ended; reconnecting" in proc.logs
    finally:
        source.stop()


def test_config_errors_name_the_yaml_path(tmp_path: Any) -> None:
    taken = free_port()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        cases = [
            (rtsp_function(HANDLER, "rtsp://127.0.0.1:1/x", taken),
             "spec.triggers.cam.attributes.sink.attributes.port: port"),
            (rtsp_function(HANDLER, "http://127.0.0.1:1/x", free_port()),
             "expected rtsp://"),
            (rtsp_function(HANDLER, "rtsp://127.0.0.1:1/x", free_port(),
                           sink={"udp_ports": "5001-5000"}), "udp_ports"),
            (rtsp_function(HANDLER, "rtsp://127.0.0.1:1/x", free_port(),
                           trigger={"processing_factor": 2, "processing_interval": 100}),
             "processing_factor or processing_interval"),
        ]
        for i, (config, expected) in enumerate(cases):
            path = tmp_path / f"f{i}.yaml"
            path.write_text(yaml.safe_dump(config))
            done = run_processor_once(["--config", str(path), "--function-dir",
                                       str(FUNCTIONS)])
            assert done.returncode == 2, done.stdout + done.stderr
            assert expected in done.stdout + done.stderr, done.stdout + done.stderr


def test_mjpeg_trigger_feeds_the_rtsp_sink(start_processor: Any) -> None:
    """An MJPEG-over-HTTP camera (ffmpeg) -> mjpeg trigger -> rtsp sink -> ffmpeg player."""
    camera_port, sink_port = free_port(), free_port()
    camera = subprocess.Popen(
        ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", f"testsrc=size=320x240:rate={FPS}",
         "-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-q:v", "5", "-f", "mpjpeg",
         "-boundary_tag", "ffmpeg", "-content_type", "multipart/x-mixed-replace;boundary=ffmpeg",
         "-listen", "1", f"http://127.0.0.1:{camera_port}/stream.mjpg"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        config = rtsp_function(HANDLER, "", sink_port)
        trigger = config["spec"]["triggers"]["cam"]
        trigger["kind"] = "mjpeg"
        trigger["attributes"] = {"url": f"http://127.0.0.1:{camera_port}/stream.mjpg",
                                 "sink": trigger["attributes"]["sink"]}
        proc = start_processor(config)
        url = f"rtsp://127.0.0.1:{sink_port}/stream"
        wait_for(lambda: '"content_type": "image/jpeg"' in proc.logs, 15.0, "MJPEG frames")
        stream = probe(url)
        assert (stream["codec_name"], stream["width"], stream["height"]) == ("mjpeg", 320, 240)
        frames, errors = decode_video(url, "tcp", 3.0)
        assert 0.7 * 3 * FPS <= frames <= 1.3 * 3 * FPS + 2, (frames, errors)
        assert "error" not in errors.lower(), errors
        # ffmpeg writes optimized Huffman tables, which RTP/JPEG cannot signal: the sink
        # re-encodes such frames, so the player sees the picture, not noise.
        played = first_frame_rgb(["-rtsp_transport", "tcp", "-i", url], 320, 240)
        original = first_frame_rgb(["-f", "lavfi", "-i", "testsrc=size=320x240"], 320, 240)
        difference = np.abs(played.astype(int) - original.astype(int)).mean()
        # Same bars; the frame counter and moving parts differ. Misread Huffman codes would
        # turn the whole picture into blocks of noise (a mean difference near 100).
        assert difference < 30, difference
    finally:
        camera.kill()
        camera.wait()
