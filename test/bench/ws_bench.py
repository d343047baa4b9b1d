#!/usr/bin/env python3
"""WebSocket benchmark: echo round trips through the processor's websocket
trigger against a bare ``websockets`` echo server.

Run as ``python test/bench/ws_bench.py``. The reference is a bare
``websockets`` echo server on uvloop; the measured setup is the processor
(async worker kind, an ``async def`` echo handler, 64 slots) behind its
websocket trigger. Both listen on free 127.0.0.1 ports and get the same load
from a client in its own process: N connections, each doing send-then-receive
in a loop for a fixed time (after a warm-up), no compression on either side.
Rounds are interleaved (the order rotates each round) and medians reported,
as ratios to the reference measured in the same run (DESIGN.md section 7).
Results go to stdout (a table) and to ``results/ws.json``.
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
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from test.bench.http_bench import (
    http_get,
    log_tail,
    machine,
    stop_process,
    tree_cpu_seconds,
    unwind_on_sigterm,
    uvloop_version,
    whole_number,
)
from test.support import free_port, platform_config

ROOT = Path(__file__).resolve().parents[2]
RESULTS_PATH = ROOT / "test" / "bench" / "results" / "ws.json"
READY_TIMEOUT = 30.0
TARGET_RATIO = 0.6  # processor round trips/s vs the bare websockets server
WORKERS = 64

# The reference: a bare websockets echo server on uvloop, no compression.
REFERENCE_SERVER = """
import sys
import uvloop
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main(port):
    async with serve(echo, "127.0.0.1", port, compression=None) as server:
        await server.serve_forever()

uvloop.run(main(int(sys.argv[1])))
"""

ECHO_HANDLER = """
async def handler(context, event):
    return event.body.decode() if event.content_type == "text/plain" else event.body
"""

# The load: N connections, each sending and awaiting its echo in a loop; round trips
# that start inside the measured window count. Prints one JSON line.
CLIENT = """
import asyncio, json, sys, time
import uvloop
from websockets.asyncio.client import connect

async def drive_all(url, connections, warmup, seconds, size):
    payload = "x" * size
    sockets = [await connect(url, compression=None) for _ in range(connections)]
    measure_from = time.perf_counter() + warmup
    end = measure_from + seconds
    latencies, total = [], 0

    async def drive(ws):
        nonlocal total
        while (sent := time.perf_counter()) < end:
            await ws.send(payload)
            if await ws.recv() != payload:
                raise SystemExit("wrong echo")
            total += 1
            if sent >= measure_from:
                latencies.append(time.perf_counter() - sent)

    await asyncio.gather(*(drive(ws) for ws in sockets))
    for ws in sockets:
        await ws.close()
    latencies.sort()
    n = len(latencies)
    print(json.dumps({"round_trips": n, "all_round_trips": total, "seconds": seconds,
                      "p50_ms": latencies[n // 2] * 1e3 if n else 0.0,
                      "p99_ms": latencies[min(n - 1, n * 99 // 100)] * 1e3 if n else 0.0}))

uvloop.run(drive_all(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]),
                     int(sys.argv[5])))
"""


@dataclass(frozen=True)
class Setup:
    name: str
    processor: bool
    min_ratio: float | None = None


REFERENCE = Setup("websockets reference", processor=False)
SETUPS = (REFERENCE, Setup(f"processor async x{WORKERS}", processor=True,
                           min_ratio=TARGET_RATIO))


@dataclass
class Server:
    setup: Setup
    proc: subprocess.Popen[bytes]
    url: str
    log_path: Path
    health_port: int | None


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    round_trips: int
    cpu_us_per_round_trip: float


# -- servers ----------------------------------------------------------------------------------
def launch(setup: Setup, workdir: Path) -> Server:
    port = free_port()
    log_path = workdir / f"{'processor' if setup.processor else 'reference'}.log"
    health_port = None
    if setup.processor:
        health_port = free_port()
        config = {
            "metadata": {"name": "ws-bench"},
            "spec": {"runtime": "python:3.11", "handler": "ws_echo_bench:handler",
                     "disableDefaultHTTPTrigger": True,
                     "runtimeAttributes": {"workerKind": "async"},
                     "triggers": {"ws": {"kind": "websocket", "numWorkers": WORKERS,
                                         "url": f"127.0.0.1:{port}"}}},
        }
        (workdir / "function.yaml").write_text(yaml.safe_dump(config))
        (workdir / "platform.yaml").write_text(yaml.safe_dump(
            platform_config(health_port, free_port(), function_level="info")))
        command = [sys.executable, "-m", "processor.cli", "--config",
                   str(workdir / "function.yaml"), "--platform-config",
                   str(workdir / "platform.yaml")]
        url = f"ws://127.0.0.1:{port}/ws"
    else:
        command = [sys.executable, str(workdir / "reference_server.py"), str(port)]
        url = f"ws://127.0.0.1:{port}/"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    return Server(setup, proc, url, log_path, health_port)


def wait_ready(server: Server, workdir: Path) -> None:
    """/ready for the processor; for both, one real echo through the client script."""
    deadline = time.monotonic() + READY_TIMEOUT
    while server.health_port is not None:
        answer = http_get(server.health_port, "/ready")
        if answer is not None and answer[0] == 200:
            break
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{server.setup.name} did not start:\n{log_tail(server.log_path)}")
        time.sleep(0.02)
    while True:
        with contextlib.suppress(RuntimeError):
            run_client(server, workdir, connections=1, warmup=0.0, seconds=0.1, size=8)
            return
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{server.setup.name} does not echo:\n{log_tail(server.log_path)}")
        time.sleep(0.1)


@contextlib.contextmanager
def running(workdir: Path) -> Iterator[dict[str, Server]]:
    servers: dict[str, Server] = {}
    try:
        for setup in SETUPS:
            servers[setup.name] = launch(setup, workdir)
        for server in servers.values():
            wait_ready(server, workdir)
        yield servers
    finally:
        for server in servers.values():
            stop_process(server.proc)


# -- load -------------------------------------------------------------------------------------
def run_client(server: Server, workdir: Path, *, connections: int, warmup: float,
               seconds: float, size: int) -> dict[str, Any]:
    command = [sys.executable, str(workdir / "client.py"), server.url, str(connections),
               str(warmup), str(seconds), str(size)]
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          timeout=warmup + seconds + 60, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"client failed against {server.setup.name}:\n{done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(server: Server, workdir: Path, args: argparse.Namespace) -> Run:
    cpu_before = tree_cpu_seconds(server.proc.pid)
    result = run_client(server, workdir, connections=args.connections, warmup=args.warmup,
                        seconds=args.duration, size=args.size)
    cpu = tree_cpu_seconds(server.proc.pid) - cpu_before
    return Run(result["round_trips"] / result["seconds"], result["p50_ms"], result["p99_ms"],
               result["round_trips"], cpu / max(result["all_round_trips"], 1) * 1e6)


def load_rounds(servers: dict[str, Server], workdir: Path, args: argparse.Namespace
                ) -> dict[str, list[Run]]:
    names = list(servers)
    runs: dict[str, list[Run]] = {name: [] for name in names}
    for round_no in range(args.rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            run = measure(servers[name], workdir, args)
            runs[name].append(run)
            print(f"  round {round_no + 1}/{args.rounds} {name:<24} {run.rps:>9.0f} rt/s  "
                  f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  "
                  f"server CPU {run.cpu_us_per_round_trip:6.1f} us/rt", flush=True)
    return runs


# -- report -----------------------------------------------------------------------------------
def summarise(setup: Setup, runs: list[Run], reference: dict[str, Any] | None
              ) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": setup.name,
        "rps": statistics.median(r.rps for r in runs),
        "p50_ms": statistics.median(r.p50_ms for r in runs),
        "p99_ms": statistics.median(r.p99_ms for r in runs),
        "cpu_us_per_round_trip": statistics.median(r.cpu_us_per_round_trip for r in runs),
        "rounds": [asdict(r) for r in runs],
    }
    if reference is not None:
        row["rps_ratio"] = row["rps"] / reference["rps"]
        row["p99_ratio"] = row["p99_ms"] / reference["p99_ms"]
        row["cpu_ratio"] = row["cpu_us_per_round_trip"] / reference["cpu_us_per_round_trip"]
        if setup.min_ratio is not None:
            row["target"] = f"rt/s >= {setup.min_ratio}x"
            row["pass"] = row["rps_ratio"] >= setup.min_ratio
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("configuration", "round trips/s", "vs ref", "p50 ms", "p99 ms (vs ref)",
              "server CPU us/rt (vs ref)", "target", "result")
    lines = []
    for row in rows:
        ref = "rps_ratio" not in row
        lines.append((
            row["name"], f"{row['rps']:.0f}", "1.00x" if ref else f"{row['rps_ratio']:.2f}x",
            f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}" + ("" if ref else f" ({row['p99_ratio']:.2f}x)"),
            f"{row['cpu_us_per_round_trip']:.1f}" + ("" if ref else f" ({row['cpu_ratio']:.2f}x)"),
            row.get("target", "(reference)"),
            "-" if "pass" not in row else ("PASS" if row["pass"] else "FAIL")))
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]
    text = [" | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True))
            for line in [header, *lines]]
    text.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(text)


# (flag, minimum, default, help): every option but --output is a count.
OPTIONS = (
    ("--rounds", 1, 3, "rounds per configuration"),
    ("--duration", 1, 6, "measured seconds per run"),
    ("--warmup", 0, 1, "warm-up seconds per run"),
    ("--connections", 1, 16, "client connections, each doing sequential round trips"),
    ("--size", 1, 64, "text message bytes"),
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    for flag, minimum, default, text in OPTIONS:
        parser.add_argument(flag, type=whole_number(minimum), default=default, help=text)
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="JSON results file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    unwind_on_sigterm()
    loop_version = uvloop_version()
    info = machine()
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    print(f"WebSocket benchmark, {date}: {info['nproc']} CPUs ({info['cpu']}), Python "
          f"{info['python']}, uvloop {loop_version} in servers and client")
    print(f"Load: {args.connections} connections x sequential {args.size}-byte text echo, "
          f"{args.duration}s after {args.warmup}s warm-up, client in its own process; "
          f"{args.rounds} interleaved rounds; medians.", flush=True)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ws-bench-") as tmp:
        workdir = Path(tmp)
        (workdir / "reference_server.py").write_text(REFERENCE_SERVER)
        (workdir / "ws_echo_bench.py").write_text(ECHO_HANDLER)
        (workdir / "client.py").write_text(CLIENT)
        with running(workdir) as servers:
            runs = load_rounds(servers, workdir, args)
    reference = summarise(REFERENCE, runs[REFERENCE.name], None)
    rows = [reference, *(summarise(s, runs[s.name], reference) for s in SETUPS[1:])]
    print()
    print(format_table(rows))
    for setup, row in zip(SETUPS[1:], rows[1:], strict=True):
        if setup.min_ratio is not None:  # one `<name>: <ratio> (target <t>)` line per target
            print(f"ws_echo_vs_bare: {row['rps_ratio']:.2f} (target >= {setup.min_ratio})")
    elapsed = time.monotonic() - began
    print(f"\nTotal time {elapsed:.0f} s; results in {args.output}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "date": date, "machine": info, "uvloop": loop_version,
        "settings": {"rounds": args.rounds, "duration_s": args.duration,
                     "warmup_s": args.warmup, "connections": args.connections,
                     "size": args.size, "workers": WORKERS},
        "configurations": rows, "elapsed_s": elapsed,
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
