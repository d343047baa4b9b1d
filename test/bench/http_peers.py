"""The servers the HTTP benchmark puts under load, and how each is started and checked.

Three peers answer ``GET /`` with ``hello`` the way their users would write it: bare
aiohttp on uvloop (the reference every ratio is taken against), uvicorn with 2 worker
processes serving a plain ASGI app, and gunicorn with 2 sync workers serving a plain
WSGI app. The processor serves a hello-world Nuclio handler in each worker kind. Two
more apps are floors, not peers (http_floors.py): a bare httptools protocol (the
processor's own HTTP parser) handing each request to one of 2 bare worker processes, and
to one of 4 threads, the least that the process and thread kinds' designs cost, measured
so that a target can be judged reachable or not in Python here. Also here: what a
running server costs, read from /proc for its whole process tree (CPU per request, RSS).
Kept apart from the driver (http_bench.py) so that what is measured can be read in one
place.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.metadata
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from test.bench.http_floors import FLOOR_APP
from test.support import free_port, platform_config, stop_process

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# The reference: what "a bare aiohttp app" means here. It prints its loop class
# once at start-up so the benchmark can show that uvloop really ran.
AIOHTTP_APP = """
import asyncio, sys
import uvloop
from aiohttp import web

async def hello(request):
    return web.Response(text="hello")

async def announce(app):
    loop = asyncio.get_running_loop()
    print(f"loop={type(loop).__module__}.{type(loop).__qualname__}", flush=True)

app = web.Application()
app.router.add_get("/", hello)
app.on_startup.append(announce)
asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

# Plain ASGI and WSGI callables, no framework: the servers themselves are measured.
ASGI_APP = """
HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"5")]

async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": b"hello"})
"""

WSGI_APP = """
HEADERS = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", "5")]

def app(environ, start_response):
    start_response("200 OK", HEADERS)
    return [b"hello"]
"""

SYNC_HANDLER = 'def handler(context, event):\n    return "hello"\n'
ASYNC_HANDLER = 'async def handler(context, event):\n    return "hello"\n'

PEERS = ("aiohttp", "uvicorn", "gunicorn", "floor-process", "floor-thread")


@dataclass(frozen=True)
class Setup:
    """One configuration under load: a peer server or floor (``peer`` set) or the processor
    with worker kind ``kind``; ``min_rps_ratio`` is a processor target."""

    name: str
    kind: str | None = None
    workers: int = 1
    min_rps_ratio: float | None = None
    peer: str | None = None
    events_per_worker: int = 1  # spec.runtimeAttributes.eventsPerWorker (process kind)
    summary: str = ""  # the processor rows' name in the `<name>: <ratio> (target <t>)` lines

    @property
    def module(self) -> str:
        return "hello_async" if self.kind == "async" else "hello_sync"


# The configurations under load, in the order of the table.
REFERENCE = Setup("aiohttp reference", peer="aiohttp")
PROCESS = Setup("processor process x2", "process", 2, min_rps_ratio=0.5,
                summary="http_process_x2")
# The same, with the opt-in pipelining (README "Worker kinds"): the next event waits in
# the worker rather than in the pool.
PIPELINED = Setup("processor process x2, 2/worker", "process", 2, min_rps_ratio=0.5,
                  events_per_worker=2, summary="http_process_x2_pipelined")
# Peers with as many worker processes as PROCESS: compared with it, without a target.
UVICORN = Setup("uvicorn x2", workers=2, peer="uvicorn")
GUNICORN = Setup("gunicorn sync x2", workers=2, peer="gunicorn")
THREAD = Setup("processor thread x4", "thread", 4, min_rps_ratio=0.5, summary="http_thread_x4")
THREAD_PIPELINED = Setup("processor thread x4, 2/worker", "thread", 4, min_rps_ratio=0.5,
                         events_per_worker=2, summary="http_thread_x4_pipelined")
# The floors (http_floors.py), each right after the processor rows it bounds: the
# hop to a worker process or thread and nothing else, so no target.
FLOOR_PROCESS = Setup("floor: httptools + 2 worker processes", workers=2,
                      peer="floor-process")
FLOOR_THREAD = Setup("floor: httptools + 4 threads", workers=4, peer="floor-thread")
SETUPS = (
    REFERENCE,
    UVICORN,
    GUNICORN,
    Setup("processor async x64", "async", 64, min_rps_ratio=0.8, summary="http_async_x64"),
    PROCESS,
    PIPELINED,
    FLOOR_PROCESS,
    THREAD,
    THREAD_PIPELINED,
    FLOOR_THREAD,
)


@dataclass
class Server:
    setup: Setup
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    ready_port: int
    ready_path: str
    launched_at: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def http_get(port: int, path: str, timeout: float = 1.0) -> tuple[int, bytes] | None:
    """Status and body, or None while nothing answers (not listening yet)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def log_tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def write_apps(workdir: Path) -> None:
    """Every app and handler as a module in ``workdir``, which each server imports from."""
    for module, source in (("hello_sync", SYNC_HANDLER), ("hello_async", ASYNC_HANDLER),
                           ("aiohttp_app", AIOHTTP_APP), ("asgi_app", ASGI_APP),
                           ("wsgi_app", WSGI_APP), ("floor_app", FLOOR_APP)):
        (workdir / f"{module}.py").write_text(source)


def peer_command(setup: Setup, workdir: Path, port: int) -> list[str]:
    """The command line a user of each peer would type for ``setup.workers`` processes.
    uvicorn gets uvloop and httptools by name (what ``uvicorn[standard]`` installs and
    ``auto`` would pick) so a missing extra fails loudly instead of measuring asyncio."""
    address = ["--host", "127.0.0.1", "--port", str(port)]
    if setup.peer == "aiohttp":
        return [sys.executable, str(workdir / "aiohttp_app.py"), str(port)]
    if setup.peer in ("floor-process", "floor-thread"):
        mode = setup.peer.removeprefix("floor-")
        return [sys.executable, str(workdir / "floor_app.py"), mode, str(port),
                str(setup.workers)]
    if setup.peer == "uvicorn":
        return [sys.executable, "-m", "uvicorn", *address, "--workers", str(setup.workers),
                "--loop", "uvloop", "--http", "httptools", "--lifespan", "off",
                "--no-access-log", "--log-level", "warning", "--app-dir", str(workdir),
                "asgi_app:app"]
    if setup.peer == "gunicorn":
        return [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}",
                "--workers", str(setup.workers), "--worker-class", "sync",
                "--log-level", "warning", "--chdir", str(workdir), "wsgi_app:app"]
    raise ValueError(f"unknown peer {setup.peer!r}")


def processor_command(setup: Setup, workdir: Path, tag: str, port: int, ready_port: int
                      ) -> list[str]:
    """processor.cli on a function.yaml with one http trigger; logging at info (the
    handler writes no per-request lines)."""
    trigger = {"kind": "http", "numWorkers": setup.workers, "url": f"127.0.0.1:{port}"}
    function = {
        "apiVersion": "nuclio.io/v1", "kind": "NuclioFunction",
        "metadata": {"name": f"bench-{setup.kind}", "namespace": "default"},
        "spec": {"runtime": "python:3.11", "handler": f"{setup.module}:handler",
                 "runtimeAttributes": {"workerKind": setup.kind,
                                       "eventsPerWorker": setup.events_per_worker},
                 "triggers": {"http": trigger}},
    }
    config, plat = workdir / f"{tag}-function.yaml", workdir / f"{tag}-platform.yaml"
    config.write_text(yaml.safe_dump(function))
    plat.write_text(yaml.safe_dump(platform_config(ready_port, free_port(),
                                                   function_level="info")))
    return [sys.executable, "-m", "processor.cli", "--config", str(config),
            "--platform-config", str(plat)]


def launch(setup: Setup, workdir: Path, tag: str) -> Server:
    """Starts one server on fresh ports; the caller waits for it and stops it."""
    port = free_port()
    log_path = workdir / f"{tag}.log"
    if setup.peer is not None:
        command = peer_command(setup, workdir, port)
        ready_port, ready_path = port, "/"
    else:
        ready_port, ready_path = free_port(), "/ready"
        command = processor_command(setup, workdir, tag, port, ready_port)
    with open(log_path, "wb") as log:
        launched_at = time.perf_counter()
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    return Server(setup, proc, port, log_path, ready_port, ready_path, launched_at)


def wait_ready(server: Server, timeout: float = READY_TIMEOUT, poll: float = 0.005) -> None:
    """Polls the readiness URL until it answers 200; fails loudly with the server's log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.setup.name} exited with {server.proc.returncode}:\n"
                               f"{log_tail(server.log_path)}")
        answer = http_get(server.ready_port, server.ready_path)
        if answer is not None and answer[0] == 200:
            return
        time.sleep(poll)
    raise RuntimeError(f"{server.setup.name} not ready within {timeout:g}s:\n"
                       f"{log_tail(server.log_path)}")


def check_hello(server: Server) -> None:
    """wrk only counts 4xx/5xx as errors: check once that the answer is really right."""
    answer = http_get(server.port, "/", timeout=5.0)
    if answer != (200, b"hello"):
        raise RuntimeError(f"{server.setup.name}: GET / answered {answer!r}, expected 200 hello")


def reference_loop(server: Server) -> str:
    match = re.search(r"loop=(\S+)", server.log_path.read_text(errors="replace"))
    return match.group(1) if match else "unknown"


@contextlib.contextmanager
def running(setups: tuple[Setup, ...], workdir: Path) -> Iterator[dict[str, Server]]:
    """Every server up and answering hello; all stopped on the way out, whatever happens."""
    servers: dict[str, Server] = {}
    try:
        for index, setup in enumerate(setups):
            servers[setup.name] = launch(setup, workdir, f"load-{index}")
        for server in servers.values():
            wait_ready(server)
            check_hello(server)
        yield servers
    finally:
        for server in servers.values():
            stop_process(server.proc)


# -- what a server costs, from /proc (the server's process and its workers) ------------
def rss_mib(pid: int) -> float | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return None


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: [state, ppid, ...] (field 3 onwards)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return []


def children(pid: int) -> list[int]:
    """Live child pids: /proc/PID/task/*/children when the kernel has it, else a /proc scan."""
    listed = list(Path(f"/proc/{pid}/task").glob("*/children"))
    if listed:
        found = {int(c) for f in listed for c in f.read_text().split()}
    else:
        found = {int(e.name) for e in Path("/proc").iterdir()
                 if e.name.isdigit() and _stat_fields(int(e.name))[1:2] == [str(pid)]}
    return sorted(c for c in found if _stat_fields(c)[:1] not in ([], ["Z"]))


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, all threads (/proc/PID/stat fields 14 and 15)."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS if len(fields) > 12 else 0.0


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in [pid, *children(pid)])


def memory_snapshot(server: Server) -> dict[str, Any]:
    workers = {str(pid): rss_mib(pid) for pid in children(server.proc.pid)}
    return {"processor_mib": rss_mib(server.proc.pid), "workers_mib": workers}


def peer_versions() -> dict[str, Any]:
    """Versions of the peers' servers, reported with the results; exits with the install
    command when one is missing (they are the ``bench`` extra, not the processor's)."""
    versions: dict[str, Any] = {}
    for package in ("uvloop", "aiohttp", "uvicorn", "httptools", "gunicorn"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            sys.exit(f"http_bench: {package} is not installed; run: pip install -e '.[bench]'")
    return versions
