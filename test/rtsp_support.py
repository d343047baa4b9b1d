"""Real RTSP peers for the rtsp tests and benchmark: a GStreamer RTSP server as the
source, ffprobe/ffmpeg as players (no pytest imports here)."""

from __future__ import annotations

import collections
import json
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from test.support import free_port, stop_process

GST_SERVER = Path(__file__).with_name("gst_rtsp_server.py")
SYSTEM_PYTHON = "/usr/bin/python3"  # the one that imports gi (see ../shared/PEERS.md)
PLAYER_TIMEOUT = 30.0


class GstSource:
    """``test/gst_rtsp_server.py`` serving KIND at rtsp://127.0.0.1:PORT/test."""

    def __init__(self, kind: str, *args: object, port: int | None = None) -> None:
        self.kind = kind
        self.args = [str(a) for a in args]
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None
        # The server's output after "ready", read all along so that a chatty GStreamer
        # never blocks on a full pipe; the tail says why a source went away.
        self.output: collections.deque[str] = collections.deque(maxlen=50)

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/test"

    def start(self, timeout: float = 15.0) -> GstSource:
        proc = subprocess.Popen([SYSTEM_PYTHON, str(GST_SERVER), str(self.port), self.kind,
                                 *self.args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, stdin=subprocess.DEVNULL)
        self.proc = proc
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.strip() == "ready":
                threading.Thread(target=self._drain, args=(proc,), daemon=True).start()
                return self
            if not line and proc.poll() is not None:
                break
        self.stop()
        raise AssertionError(f"the GStreamer RTSP server ({SYSTEM_PYTHON} {GST_SERVER}) did not "
                             f"start: {line!r}; it needs python3-gi and "
                             "gir1.2-gst-rtsp-server-1.0 (make install-test)")

    def _drain(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line.rstrip())

    def describe(self) -> str:
        """The server's state for a failure message: running or its exit code, and the
        last lines it printed."""
        proc = self.proc
        state = "not started" if proc is None else (
            "running" if proc.poll() is None else f"exited with {proc.returncode}")
        return f"GStreamer RTSP server {state}; its output: {list(self.output)[-10:]}"

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 5)
        self.proc = None

    def __enter__(self) -> GstSource:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _run(args: list[str], timeout: float = PLAYER_TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    """Runs a player, bounded in time (a player of a broken server can hang forever)."""
    try:
        return subprocess.run(args, capture_output=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{args[0]} did not finish within {timeout}s: {args}") from None


def probe(url: str, transport: str = "tcp") -> dict[str, Any]:
    """ffprobe's view of the first stream (codec_name, width, height, sample_rate, ...)."""
    done = _run(["ffprobe", "-v", "error", "-rtsp_transport", transport, "-show_streams",
                 "-of", "json", url])
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    streams = json.loads(done.stdout)["streams"]
    assert len(streams) == 1, streams
    stream: dict[str, Any] = streams[0]
    return stream


def count_frames(url: str, transport: str = "tcp", seconds: float = 3.0) -> int:
    """Video frames ffprobe decodes in the first ``seconds`` of the stream."""
    done = _run(["ffprobe", "-v", "error", "-rtsp_transport", transport, "-count_frames",
                 "-read_intervals", f"%+{seconds}", "-select_streams", "v:0",
                 "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", url])
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return int(done.stdout.decode().strip().strip(","))


def decode_video(url: str, transport: str = "tcp", seconds: float = 3.0
                 ) -> tuple[int, str]:
    """(frames ffmpeg decodes in ``seconds``, ffmpeg's error output)."""
    done = _run(["ffmpeg", "-v", "error", "-rtsp_transport", transport, "-i", url,
                 "-t", str(seconds), "-f", "framemd5", "-"])
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    frames = sum(1 for line in done.stdout.decode().splitlines()
                 if line and not line.startswith("#"))
    return frames, done.stderr.decode(errors="replace")


def decode_audio(url: str, transport: str = "tcp", seconds: float = 3.0) -> np.ndarray:
    """The first ``seconds`` of audio as ffmpeg decodes it, s16 interleaved at the
    stream's own rate and channel count."""
    done = _run(["ffmpeg", "-v", "error", "-rtsp_transport", transport, "-i", url,
                 "-t", str(seconds), "-f", "s16le", "-"])
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return np.frombuffer(done.stdout, "<i2")


def dominant_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(float) * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))


def rtsp_function(handler: str, source_url: str, sink_port: int, *, workers: int = 2,
                  worker_kind: str = "thread", trigger: dict[str, Any] | None = None,
                  sink: dict[str, Any] | None = None,
                  extra_triggers: dict[str, Any] | None = None) -> dict[str, Any]:
    """A function.yaml with one rtsp trigger reading ``source_url`` into an rtsp sink on
    127.0.0.1:``sink_port``, and no HTTP trigger."""
    attributes: dict[str, Any] = {
        "url": source_url, "reconnect_delay": "200ms", "reconnect_max_delay": "1s",
        "sink": {"kind": "rtsp",
                 "attributes": {"host": "127.0.0.1", "port": sink_port, **(sink or {})}},
        **(trigger or {})}
    return {"apiVersion": "nuclio.io/v1", "kind": "NuclioFunction",
            "metadata": {"name": "rtsp-fn", "namespace": "default"},
            "spec": {"runtime": "python:3.11", "handler": handler,
                     "disableDefaultHTTPTrigger": True,
                     "runtimeAttributes": {"workerKind": worker_kind},
                     "triggers": {"cam": {"kind": "rtsp", "numWorkers": workers,
                                          "attributes": attributes},
                                  **(extra_triggers or {})}}}


class RawRtspClient:
    """A bare RTSP client over one socket, for protocol errors and stalled players."""

    def __init__(self, port: int, *, receive_buffer: int | None = None) -> None:
        import socket

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connect, so the TCP window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        self.buffer = b""
        self.cseq = 0

    def send_raw(self, data: bytes) -> tuple[int, dict[str, str], bytes]:
        self.sock.sendall(data)
        return self.read_response()

    def request(self, method: str, url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        self.cseq += 1
        lines = [f"{method} {url} RTSP/1.0", f"CSeq: {self.cseq}",
                 *(f"{k.replace('_', '-')}: {v}" for k, v in headers.items())]
        return self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode())

    def read_response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed; got {self.buffer!r}")
            self.buffer += chunk
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.buffer = rest[length:]
        return int(lines[0].split()[1]), headers, rest[:length]

    def close(self) -> None:
        self.sock.close()


def first_frame_rgb(args: list[str], width: int, height: int) -> np.ndarray:
    """One decoded frame as an RGB array; ``args`` are ffmpeg's input arguments."""
    done = _run(["ffmpeg", "-v", "error", *args, "-frames:v", "1", "-f", "rawvideo",
                 "-pix_fmt", "rgb24", "-"])
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return np.frombuffer(done.stdout, np.uint8).reshape(height, width, 3)


def gst_play_jpeg(url: str, protocol: str, buffers: int) -> subprocess.CompletedProcess[bytes]:
    """GStreamer's rtspsrc as a second, independent player: depayload and decode
    ``buffers`` JPEG frames (exit 0 when they all decoded)."""
    return _run(["gst-launch-1.0", "-q", "rtspsrc", f"location={url}", f"protocols={protocol}",
                 "!", "rtpjpegdepay", "!", "jpegdec", "!", "fakesink",
                 f"num-buffers={buffers}"])
