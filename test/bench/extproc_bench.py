#!/usr/bin/env python3
"""ext_proc benchmark: Envoy alone against Envoy with our processor as its ext_proc.

Run as ``python test/bench/extproc_bench.py``. One Envoy (one worker thread)
has a listener per row in front of the same aiohttp echo upstream: no ext_proc
filter (the reference), our wrapprocessor (request and response headers and
BUFFERED bodies, a passthrough async handler) and our preprocessor on request
headers only, over gRPC and over Envoy's HTTP transport (``transport: http``).
``wrk`` POSTs a small body through each; rounds are interleaved and medians
reported with ratios to the reference (DESIGN.md section 7). Targets:
headers-only preprocessor >= 0.6x, buffered wrapprocessor >= 0.4x. Three more
rows measure the floor: a bare grpc.aio ext_proc server that answers CONTINUE to
everything, in each mode, so the cost of gRPC itself shows, and a bare HTTP
server on Envoy's other transport (``http_service``, headers only), so the bound
is known for both transports Envoy offers. No Python ext_proc SDK is available
from the package index here, so no peer processor is measured. Results go to
stdout and ``results/extproc.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from test.bench.http_bench import (
    WrkRun,
    machine,
    parse_wrk,
    require_wrk,
    tree_cpu_seconds,
)
from test.conftest import RunningProcessor
from test.envoy_support import Route, RunningEnvoy, RunningUpstream
from test.support import free_port

ROOT = Path(__file__).resolve().parents[2]
RESULTS_PATH = ROOT / "test" / "bench" / "results" / "extproc.json"
CONNECTIONS = 32
BODY = "x" * 64
POST_SCRIPT = f'wrk.method = "POST"\nwrk.body = "{BODY}"\n' \
              'wrk.headers["Content-Type"] = "text/plain"\n'


# The floor: the least a grpc.aio ext_proc server can do (CONTINUE to everything, no
# events, no handler), on uvloop like the processor. It shows what bounds ours.
BARE_GRPC_AIO = """
import asyncio, sys
import grpc, uvloop
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

REPLIES = {kind: pb.ProcessingResponse(**{kind: pb.HeadersResponse() if "headers" in kind
                                          else pb.BodyResponse()}).SerializeToString()
           for kind in ("request_headers", "response_headers", "request_body", "response_body")}

async def process(requests, context):
    async for message in requests:
        yield REPLIES[message.WhichOneof("request")]

async def main(port):
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    method = grpc.stream_stream_rpc_method_handler(
        process, request_deserializer=pb.ProcessingRequest.FromString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "envoy.service.ext_proc.v3.ExternalProcessor", {"Process": method}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()

uvloop.install()
asyncio.run(main(int(sys.argv[1])))
"""
HEADERS_ONLY = {"request_body": "NONE", "response_headers": "SKIP", "response_body": "NONE"}
HTTP_HEADERS_ONLY = {**HEADERS_ONLY, "http_service": True}

# The other transport Envoy offers (``http_service``, headers only, work in progress in
# Envoy 1.40): each message is a JSON ProcessingRequest POSTed to /process, answered with
# a JSON ProcessingResponse. The least a Python server can do with it: httptools on
# uvloop, orjson to find the phase, CONTINUE. Whether this transport would lift the
# headers-only bound that gRPC sets is what the row says.
BARE_HTTP = """
import asyncio, sys
import httptools, orjson, uvloop

PHASES = ("request_headers", "response_headers")
REPLIES = {phase: orjson.dumps({phase: {}}) for phase in PHASES}
HEAD = b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\nContent-Length: %d\\r\\n\\r\\n"


class Exchange(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.body = transport, []
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        message = orjson.loads(b"".join(self.body))
        self.body = []
        reply = next((REPLIES[p] for p in PHASES if p in message), None)
        if reply is None:
            self.transport.write(b"HTTP/1.1 400 Bad Request\\r\\nContent-Length: 0\\r\\n\\r\\n")
        else:
            self.transport.write(HEAD % len(reply) + reply)


async def main(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Exchange, "127.0.0.1", port)
    await server.serve_forever()

uvloop.install()
asyncio.run(main(int(sys.argv[1])))
"""


@dataclass(frozen=True)
class Setup:
    name: str
    # The processor type; None: Envoy without ext_proc; "bare" / "bare-http": the floors.
    type: str | None
    route: dict[str, Any]  # Route keyword arguments: processing modes, http_service
    min_ratio: float | None = None
    summary: str = ""  # the name in the `<name>: <ratio> (target <t>)` line

    @property
    def transport(self) -> str:
        """Our trigger's transport: the one this row's Envoy route uses."""
        return "http" if self.route.get("http_service") else "grpc"


SETUPS = (
    Setup("Envoy, no ext_proc", None, {}),
    Setup("wrapprocessor, headers + BUFFERED", "wrapprocessor", {}, 0.4, "extproc_wrap_buffered"),
    Setup("preprocessor, request headers only", "preprocessor", HEADERS_ONLY, 0.6,
          "extproc_pre_headers_only"),
    Setup("preprocessor, headers only, HTTP transport", "preprocessor", HTTP_HEADERS_ONLY, 0.6,
          "extproc_pre_headers_only_http"),
    Setup("floor: bare grpc.aio, headers + BUFFERED", "bare", {}, None,
          "extproc_floor_wrap_buffered"),
    Setup("floor: bare grpc.aio, headers only", "bare", HEADERS_ONLY, None,
          "extproc_floor_headers_only"),
    Setup("floor: bare HTTP ext_proc, headers only", "bare-http",
          HTTP_HEADERS_ONLY, None, "extproc_floor_http_headers_only"),
)


def processor_config(setup: Setup, port: int, workers: int) -> dict[str, Any]:
    return {"apiVersion": "nuclio.io/v1", "kind": "NuclioFunction",
            "metadata": {"name": "bench-extproc", "namespace": "default"},
            "spec": {"runtime": "python:3.11", "handler": "extproc_passthrough:handler",
                     "disableDefaultHTTPTrigger": True,
                     "triggers": {"ep": {"kind": "extproc", "numWorkers": workers,
                                         "attributes": {"type": setup.type, "port": port,
                                                        "transport": setup.transport}}}}}


@contextlib.contextmanager
def running(workdir: Path, workers: int
            ) -> Iterator[tuple[RunningEnvoy, dict[str, Any], RunningUpstream]]:
    """The upstream, one processor per ext_proc setup, and Envoy; all stopped on the way out."""
    upstream = RunningUpstream(workdir)
    processors: dict[str, RunningProcessor] = {}
    envoy: RunningEnvoy | None = None
    floors: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    for kind, script in (("bare", BARE_GRPC_AIO), ("bare-http", BARE_HTTP)):
        (workdir / f"{kind}.py").write_text(script)
        floor_port = free_port()
        floors[kind] = (subprocess.Popen([sys.executable, str(workdir / f"{kind}.py"),
                                          str(floor_port)], cwd=ROOT, stdin=subprocess.DEVNULL),
                        floor_port)
    try:
        routes = []
        for index, setup in enumerate(SETUPS):
            port = None
            if setup.type in floors:
                port = floors[setup.type][1]
            elif setup.type is not None:
                port = free_port()
                proc_dir = workdir / f"processor-{index}"
                proc_dir.mkdir()
                processors[setup.name] = RunningProcessor(
                    processor_config(setup, port, workers), workdir=proc_dir,
                    extra_args=("--listen-host", "127.0.0.1", "--log-level", "warn"))
            routes.append(Route(port, message_timeout="5s", **setup.route))
        for proc in processors.values():
            proc.wait_ready()
        envoy = RunningEnvoy.with_routes(routes, upstream.port, workdir)
        yield (envoy, {**processors, **{s.name: floors[s.type][0] for s in SETUPS
                                        if s.type in floors}}, upstream)
    finally:
        for floor, _ in floors.values():
            floor.kill()
            floor.wait()
        if envoy is not None:
            envoy.stop()
        for proc in processors.values():
            proc.stop()
        upstream.stop()


def run_wrk(url: str, seconds: int, script: Path) -> WrkRun:
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s",
               str(script), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30,
                          check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


def check_route(url: str) -> None:
    """wrk counts only statuses: check once that the body really goes through."""
    done = subprocess.run(["curl", "-s", "-X", "POST", "--data", BODY, url],
                          capture_output=True, text=True, timeout=10, check=False)
    if f'"body": "{BODY}"' not in done.stdout:
        raise RuntimeError(f"{url} did not echo the body: {done.stdout[:300]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--workers", type=int, default=64, help="async slots per processor")
    args = parser.parse_args()
    wrk_version = require_wrk()
    runs: dict[str, list[WrkRun]] = {s.name: [] for s in SETUPS}
    # CPU per request of each process apart: "server" is the ext_proc server, "envoy" and
    # "upstream" show what the rest of the chain costs (WrkRun.cpu_us_per_request is
    # Envoy + server, as before). Together they give the bound on the targets: the
    # reference's whole chain against Envoy's own extra work for ext_proc.
    cpu: dict[str, dict[str, list[float]]] = {
        part: {s.name: [] for s in SETUPS} for part in ("server", "envoy", "upstream")}
    with tempfile.TemporaryDirectory(prefix="extproc-bench-") as tmp, \
            running(Path(tmp), args.workers) as (envoy, processors, upstream):
        script = Path(tmp) / "post.lua"
        script.write_text(POST_SCRIPT)
        for index in range(len(SETUPS)):
            check_route(envoy.url("/", index))
        for round_no in range(args.rounds):
            shift = round_no % len(SETUPS)
            order = list(range(len(SETUPS)))
            for index in order[shift:] + order[:shift]:
                setup = SETUPS[index]
                url = envoy.url("/bench", index)
                if args.warmup:
                    run_wrk(url, args.warmup, script)
                server = processors.get(setup.name)
                pids = {"envoy": envoy.proc.pid, "upstream": upstream.proc.pid}
                if server:
                    pids["server"] = (server.pid if isinstance(server, subprocess.Popen)
                                      else server.proc.pid)
                before = {part: tree_cpu_seconds(pid) for part, pid in pids.items()}
                run = run_wrk(url, args.seconds, script)
                used = {part: (tree_cpu_seconds(pid) - before[part]) / max(run.requests, 1) * 1e6
                        for part, pid in pids.items()}
                used.setdefault("server", 0.0)
                run.cpu_us_per_request = used["envoy"] + used["server"]
                runs[setup.name].append(run)
                for part, value in used.items():
                    cpu[part][setup.name].append(value)
                print(f"  round {round_no + 1}/{args.rounds} {setup.name:<36} "
                      f"{run.rps:>8.0f} req/s  p50 {run.p50_ms:6.2f} ms  "
                      f"p99 {run.p99_ms:6.2f} ms  CPU us/req: Envoy {used['envoy']:4.0f}, "
                      f"ext_proc server {used['server']:4.0f}, upstream {used['upstream']:4.0f}"
                      + (f"  [{', '.join(run.problems)}]" if run.problems else ""), flush=True)
    report(runs, cpu, args, wrk_version)


def report(runs: dict[str, list[WrkRun]], cpu: dict[str, dict[str, list[float]]],
           args: argparse.Namespace, wrk_version: str) -> None:
    reference = statistics.median(r.rps for r in runs[SETUPS[0].name])
    reference_p99 = statistics.median(r.p99_ms for r in runs[SETUPS[0].name])
    rows = []
    print(f"\n{'configuration':<42} {'req/s':>7} {'ratio':>6} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'p99 x':>6} {'server us':>9} {'Envoy us':>8} {'upstr. us':>9}  target")
    for setup in SETUPS:
        mine = runs[setup.name]
        row: dict[str, Any] = {
            "name": setup.name, "rps": statistics.median(r.rps for r in mine),
            "p50_ms": statistics.median(r.p50_ms for r in mine),
            "p99_ms": statistics.median(r.p99_ms for r in mine),
            "cpu_us_per_request": statistics.median(r.cpu_us_per_request or 0 for r in mine),
            **{f"{part}_cpu_us_per_request": statistics.median(values[setup.name])
               for part, values in cpu.items()},
            "problems": sorted({p for r in mine for p in r.problems}),
            "rounds": [asdict(r) for r in mine]}
        row["ratio"] = row["rps"] / reference
        row["p99_ratio"] = row["p99_ms"] / reference_p99
        target = ""
        if setup.min_ratio is not None:
            row["pass"] = row["ratio"] >= setup.min_ratio and not row["problems"]
            target = f">= {setup.min_ratio}x: {'met' if row['pass'] else 'NOT met'}"
        rows.append(row)
        print(f"{setup.name:<42} {row['rps']:>7.0f} {row['ratio']:>6.2f} {row['p50_ms']:>7.2f} "
              f"{row['p99_ms']:>7.2f} {row['p99_ratio']:>6.2f} "
              f"{row['server_cpu_us_per_request']:>9.0f} {row['envoy_cpu_us_per_request']:>8.0f} "
              f"{row['upstream_cpu_us_per_request']:>9.0f}  {target}"
              + (f"  [{', '.join(row['problems'])}]" if row["problems"] else ""))
    RESULTS_PATH.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_PATH.write_text(json.dumps({
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(), "wrk": wrk_version, "connections": CONNECTIONS,
        "rounds": args.rounds, "seconds": args.seconds, "workers": args.workers,
        "rows": rows}, indent=2))
    print()
    for setup, row in zip(SETUPS, rows, strict=True):
        if setup.summary:
            print(f"{setup.summary}: {row['ratio']:.2f} "
                  + (f"(target >= {setup.min_ratio})" if setup.min_ratio else "(no target)"))
    print(f"\nresults: {RESULTS_PATH}")


if __name__ == "__main__":
    main()
