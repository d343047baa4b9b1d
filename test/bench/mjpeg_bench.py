#!/usr/bin/env python3
"""MJPEG benchmark: frames through the processor (mjpeg trigger -> passthrough handler ->
mjpeg sink) against a bare reader of the same camera.

Run as ``python test/bench/mjpeg_bench.py``. A local camera (its own process)
serves 640x480 JPEGs as ``multipart/x-mixed-replace``, each frame carrying its
send time (wall clock, in a JPEG comment segment). The same reader program (its
own process; aiohttp + the project's multipart parser, which only parses parts)
reads either:

- (a) the camera directly: the reference; or
- (b) the processor's mjpeg sink, the processor reading the camera with the
  mjpeg trigger and a passthrough ``async def`` handler (numWorkers 1); or
- (c) the floor: a bare relay process that reads the camera like the reader and
  writes each part to its client like the mjpeg sink, with nothing in between;
  what any trigger -> sink design costs here before events and handlers.

Throughput: the camera unthrottled; frames/s the reader gets. Latency: the
camera at 30 fps; per frame, arrival time minus send time; "added" latency is
(b)'s percentile minus (a)'s. Rounds interleave (a) and (b), medians are
reported; results go to stdout and ``results/mjpeg.json`` (DESIGN.md section 7).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from test.bench.http_bench import (
    http_get,
    log_tail,
    machine,
    stop_process,
    tree_cpu_seconds,
    unwind_on_sigterm,
)
from test.support import free_port, platform_config

ROOT = Path(__file__).resolve().parents[2]
RESULTS_PATH = ROOT / "test" / "bench" / "results" / "mjpeg.json"
TARGET_RATIO = 0.5
TARGET_ADDED_P99_MS = 10.0
LATENCY_FPS = 30
_STAMP_LEN = 32


def stamp_frame(jpeg: bytes, sent: float) -> bytes:
    """The JPEG with a comment segment holding the send time (fixed size, after SOI)."""
    text = f"{sent:.6f}".encode().ljust(_STAMP_LEN)
    return jpeg[:2] + b"\xff\xfe" + (_STAMP_LEN + 2).to_bytes(2, "big") + text + jpeg[2:]


def read_stamp(jpeg: bytes) -> float:
    return float(jpeg[6:6 + _STAMP_LEN])


# -- the camera (a process of its own) ------------------------------------------------------
def serve_camera(port: int) -> None:
    import uvloop
    from aiohttp import web

    from test.mjpeg_support import encode_jpegs

    jpegs = encode_jpegs(30, 640, 480, quality=4)

    async def stream(request: web.Request) -> web.StreamResponse:
        fps = float(request.query.get("fps", "0"))
        response = web.StreamResponse(headers={
            "Content-Type": "multipart/x-mixed-replace; boundary=camera"})
        await response.prepare(request)
        start, i = time.monotonic(), 0
        with contextlib.suppress(ConnectionError):  # the reader is done
            while True:
                jpeg = stamp_frame(jpegs[i % len(jpegs)], time.time())
                await response.write(b"--camera\r\nContent-Type: image/jpeg\r\n"
                                     b"Content-Length: " + str(len(jpeg)).encode()
                                     + b"\r\n\r\n" + jpeg + b"\r\n")
                i += 1
                if fps:
                    await asyncio.sleep(max(0.0, start + i / fps - time.monotonic()))
        return response

    app = web.Application()
    app.router.add_get("/stream", stream)
    uvloop.install()
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# -- the reader (a process of its own) ------------------------------------------------------
async def read_stream(url: str, seconds: float, warmup: float) -> dict[str, Any]:
    import aiohttp

    from media.multipart import MultipartParser, boundary_from_content_type

    latencies: list[float] = []
    frames = 0
    timeout = aiohttp.ClientTimeout(total=None, sock_read=10)
    async with aiohttp.ClientSession(timeout=timeout, read_bufsize=1 << 18) as session, \
            session.get(url) as response:
        parser = MultipartParser(boundary_from_content_type(response.headers["Content-Type"]))
        start = time.monotonic()
        measure_from, end = start + warmup, start + warmup + seconds
        cpu_from: float | None = None
        async for chunk in response.content.iter_any():
            now = time.monotonic()
            if now >= end:
                break
            got = parser.feed(chunk)
            if now >= measure_from and got:
                if cpu_from is None:
                    cpu_from = time.process_time()
                wall = time.time()
                frames += len(got)
                latencies.extend(wall - read_stamp(jpeg) for jpeg in got)
        cpu = time.process_time() - (cpu_from or time.process_time())
    return {"frames": frames, "fps": frames / seconds, "latencies": latencies,
            "reader_cpu_us_per_frame": cpu / frames * 1e6 if frames else None}


# -- the floor: a bare relay (a process of its own) -----------------------------------------
async def relay(camera_url: str, port: int) -> None:
    """The least a trigger -> sink design costs in Python here: read the camera as the
    reader does (aiohttp + the project's multipart parser), and write each part to the
    connected clients as the mjpeg sink does (head, JPEG, CRLF in one writelines), with
    no event, pipeline, handler or metrics in between."""
    import aiohttp

    from media.multipart import MultipartParser, boundary_from_content_type

    clients: set[asyncio.Transport] = set()
    head = (b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=relay"
            b"\r\nConnection: close\r\n\r\n")
    frames_read = 0  # served on GET /frames, so its CPU is counted per frame read

    class Client(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = cast(asyncio.Transport, transport)

        def data_received(self, data: bytes) -> None:
            if data.startswith(b"GET /frames "):
                body = str(frames_read).encode()
                self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: "
                                     + str(len(body)).encode() + b"\r\n\r\n" + body)
                self.transport.close()
            elif b"\r\n\r\n" in data and self.transport not in clients:
                self.transport.write(head)
                clients.add(self.transport)

        def connection_lost(self, exc: Exception | None) -> None:
            clients.discard(self.transport)

    loop = asyncio.get_running_loop()
    await loop.create_server(Client, "127.0.0.1", port)
    print("ready", flush=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=10)
    async with aiohttp.ClientSession(timeout=timeout, read_bufsize=1 << 18) as session, \
            session.get(camera_url) as response:
        parser = MultipartParser(boundary_from_content_type(response.headers["Content-Type"]))
        async for chunk in response.content.iter_any():
            jpegs = parser.feed(chunk)
            frames_read += len(jpegs)
            for jpeg in jpegs:
                part = (b"--relay\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        + str(len(jpeg)).encode() + b"\r\n\r\n", jpeg, b"\r\n")
                for transport in clients:
                    if transport.get_write_buffer_size() <= 2 * (len(jpeg) + 80):
                        transport.writelines(part)


class Relay:
    """The bare relay in its own process, reading ``camera_url``, serving on a free port."""

    def __init__(self, camera_url: str) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--relay", camera_url, "--relay-port", str(self.port)],
            cwd=ROOT, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the relay did not start ({self.proc.poll()})")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream"

    def frames_read(self) -> float:
        answer = http_get(self.port, "/frames")
        assert answer is not None and answer[0] == 200, answer
        return float(answer[1])

    def stop(self) -> None:
        stop_process(self.proc)


def run_reader(url: str, seconds: float, warmup: float) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--read", url, "--seconds", str(seconds),
                           "--warmup", str(warmup)], capture_output=True, text=True,
                          timeout=seconds + warmup + 30, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"reader failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


# -- the processor --------------------------------------------------------------------------
PASSTHROUGH = """
async def handler(context, event):
    return context.Response(body=event.body, content_type="image/jpeg")
"""


class Processor:
    def __init__(self, workdir: Path, camera_url: str) -> None:
        self.sink_port, health, metrics = free_port(), free_port(), free_port()
        self.health, self.metrics = health, metrics
        (workdir / "passthrough.py").write_text(PASSTHROUGH)
        cfg = {"apiVersion": "nuclio.io/v1", "kind": "NuclioFunction",
               "metadata": {"name": "mjpeg-bench"},
               "spec": {"runtime": "python:3.11", "handler": "passthrough:handler",
                        "disableDefaultHTTPTrigger": True,
                        "triggers": {"cam": {"kind": "mjpeg", "numWorkers": 1, "attributes": {
                            "url": camera_url, "sink": {"kind": "mjpeg", "attributes": {
                                "host": "127.0.0.1", "port": self.sink_port}}}}}}}
        config, platform = workdir / "function.yaml", workdir / "platform.yaml"
        config.write_text(yaml.safe_dump(cfg))
        pcfg = platform_config(health, metrics, function_level="warn")
        pcfg["logger"]["system"] = [{"level": "warn", "sink": "stdout"}]
        platform.write_text(yaml.safe_dump(pcfg))
        self.log = workdir / "processor.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "processor.cli", "--config", str(config),
                 "--platform-config", str(platform), "--function-dir", str(workdir)],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"processor exited:\n{log_tail(self.log)}")
            answer = http_get(health, "/ready")
            if answer is not None and answer[0] == 200:
                return
            time.sleep(0.05)
        raise RuntimeError(f"processor not ready:\n{log_tail(self.log)}")

    def frames_read(self) -> float:
        answer = http_get(self.metrics, "/metrics")
        assert answer is not None
        for line in answer[1].decode().splitlines():
            if line.startswith("nuclio_processor_frames_read_total{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sink_port}/stream"

    def stop(self) -> None:
        stop_process(self.proc)


# -- rounds ----------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def measure(camera: str, workdir: Path, rounds: int, seconds: float, fps: int
            ) -> dict[str, Any]:
    source = f"{camera}?fps={fps}"
    bare: list[dict[str, Any]] = []
    ours: list[dict[str, Any]] = []
    floor: list[dict[str, Any]] = []
    names = ["bare", "processor", "relay"]
    for r in range(rounds):
        for which in names[r % 3:] + names[:r % 3]:  # the order rotates every round
            if which == "bare":
                bare.append(run_reader(source, seconds, 0.5))
                continue
            if which == "relay":
                relay = Relay(source)
                try:
                    cpu_before, frames_before = tree_cpu_seconds(relay.proc.pid), \
                        relay.frames_read()
                    result = run_reader(relay.url, seconds, 1.0)
                    cpu = tree_cpu_seconds(relay.proc.pid) - cpu_before
                    frames = relay.frames_read() - frames_before  # as the processor's row
                    result["processor_cpu_us_per_frame"] = cpu / frames * 1e6 if frames else None
                    floor.append(result)
                finally:
                    relay.stop()
                continue
            proc = Processor(Path(tempfile.mkdtemp(dir=workdir)), source)
            try:
                cpu_before, frames_before = tree_cpu_seconds(proc.proc.pid), proc.frames_read()
                result = run_reader(proc.url, seconds, 1.0)
                cpu = tree_cpu_seconds(proc.proc.pid) - cpu_before
                frames = proc.frames_read() - frames_before
                result["processor_cpu_us_per_frame"] = cpu / frames * 1e6 if frames else None
                ours.append(result)
            finally:
                proc.stop()
    return {"bare": bare, "processor": ours, "relay": floor}


def summarise(runs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, results in runs.items():
        lat = [x for r in results for x in r["latencies"]]
        out[name] = {"fps_rounds": [round(r["fps"], 1) for r in results],
                     "fps_median": round(statistics.median(r["fps"] for r in results), 1),
                     "latency_ms_p50": round(percentile(lat, 0.50) * 1000, 2),
                     "latency_ms_p99": round(percentile(lat, 0.99) * 1000, 2),
                     "frames": sum(r["frames"] for r in results)}
        for key in ("reader_cpu_us_per_frame", "processor_cpu_us_per_frame"):
            values = [r[key] for r in results if r.get(key) is not None]
            if values:
                out[name][key] = round(statistics.median(values), 1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--read", help=argparse.SUPPRESS)
    parser.add_argument("--relay", help=argparse.SUPPRESS)
    parser.add_argument("--relay-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=0.5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve_camera(args.serve)
        return 0
    if args.relay:
        import uvloop
        uvloop.run(relay(args.relay, args.relay_port))
        return 0
    if args.read:
        import uvloop
        print(json.dumps(uvloop.run(read_stream(args.read, args.seconds, args.warmup))))
        return 0
    unwind_on_sigterm()
    port = free_port()
    camera = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], cwd=ROOT,
                              stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while http_get(port, "/nothing") is None:
            if time.monotonic() > deadline or camera.poll() is not None:
                raise RuntimeError("the camera did not start")
            time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/stream"
        with tempfile.TemporaryDirectory() as tmp:
            workdir = Path(tmp)
            throughput = summarise(measure(url, workdir, args.rounds, args.seconds, 0))
            latency = summarise(measure(url, workdir, args.rounds, args.seconds,
                                        LATENCY_FPS))
    finally:
        stop_process(camera)
    ratio = throughput["processor"]["fps_median"] / throughput["bare"]["fps_median"]
    added_p50 = latency["processor"]["latency_ms_p50"] - latency["bare"]["latency_ms_p50"]
    added_p99 = latency["processor"]["latency_ms_p99"] - latency["bare"]["latency_ms_p99"]
    from test.mjpeg_support import encode_jpegs
    frame_bytes = statistics.mean(len(j) for j in encode_jpegs(30, 640, 480, quality=4))
    report = {"when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "machine": machine(), "rounds": args.rounds, "seconds": args.seconds,
              "frame_bytes_mean": round(frame_bytes),
              "throughput": throughput, "latency_at_30fps": latency,
              "ratio": round(ratio, 3),
              "floor_ratio": throughput["relay"]["fps_median"] / throughput["bare"]["fps_median"],
              "added_latency_ms_p50": round(added_p50, 2),
              "added_latency_ms_p99": round(added_p99, 2),
              "targets": {"ratio": TARGET_RATIO, "added_p99_ms": TARGET_ADDED_P99_MS},
              "met": {"ratio": ratio >= TARGET_RATIO,
                      "added_p99": added_p99 <= TARGET_ADDED_P99_MS}}
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps(report, indent=2))
    t, lat = throughput, latency
    print(f"machine: {report['machine']['nproc']} cores, {report['machine']['cpu']}; "
          f"640x480 JPEGs of {report['frame_bytes_mean']} bytes on average")
    print("| 640x480 MJPEG | frames/s (median) | rounds | latency p50 / p99 at 30 fps |")
    print("|---|---|---|---|")
    for name, label in (("bare", "bare reader (reference)"),
                        ("processor", "processor: trigger -> passthrough -> mjpeg sink"),
                        ("relay", "floor: bare relay (parser -> writelines, no event)")):
        print(f"| {label} | {t[name]['fps_median']} | {t[name]['fps_rounds']} | "
              f"{lat[name]['latency_ms_p50']} / {lat[name]['latency_ms_p99']} ms |")
    print(f"CPU per frame (unthrottled, medians): bare reader "
          f"{t['bare'].get('reader_cpu_us_per_frame')} us; processor "
          f"{t['processor'].get('processor_cpu_us_per_frame')} us, plus its sink's reader "
          f"{t['processor'].get('reader_cpu_us_per_frame')} us; bare relay "
          f"{t['relay'].get('processor_cpu_us_per_frame')} us, plus its reader "
          f"{t['relay'].get('reader_cpu_us_per_frame')} us")
    print(f"ratio {ratio:.2f} (target >= {TARGET_RATIO}); added latency p50 {added_p50:.2f} ms, "
          f"p99 {added_p99:.2f} ms (target <= {TARGET_ADDED_P99_MS} ms)")
    print("(the machine is shared: only the ratio between interleaved rounds means anything)")
    print(f"mjpeg_passthrough_vs_bare: {ratio:.2f} (target >= {TARGET_RATIO})")
    print(f"mjpeg_added_p99_ms: {added_p99:.2f} (target <= {TARGET_ADDED_P99_MS})")
    print(f"mjpeg_floor_bare_relay_vs_bare: {report['floor_ratio']:.2f} (no target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
