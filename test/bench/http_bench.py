#!/usr/bin/env python3
"""HTTP benchmark: the processor's http trigger against bare aiohttp, uvicorn and gunicorn.

Run as ``python test/bench/http_bench.py`` (``make bench``). Every figure is a ratio
against a reference measured in the same run on the same machine, because these machines
are shared and noisy (DESIGN.md section 7): a hello-world aiohttp app on uvloop.
Measured beside it (http_peers.py says what each server is): uvicorn (2 workers, ASGI)
and gunicorn (2 sync workers, WSGI), the servers a Python user would otherwise deploy,
the processor serving a hello-world Nuclio handler with each worker kind, and two floors
(http_floors.py): bare httptools (the processor's parser) handing each request to one of
2 bare worker processes or 4 threads, the least the process and thread kinds' designs
cost in Python, which tell whether their targets are reachable at all. Load comes from
``wrk``; runs are interleaved across rounds and the medians are reported. Also measured:
cold start to ``/ready`` and the memory of process workers. Results go to stdout (a
table and summary lines) and to ``results/http.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from test.bench.cold_start import cold_start, cold_start_lines, summary_lines
from test.bench.http_peers import (
    FLOOR_PROCESS,
    FLOOR_THREAD,
    GUNICORN,
    PIPELINED,
    PROCESS,
    REFERENCE,
    SETUPS,
    THREAD,
    UVICORN,
    Server,
    Setup,
    memory_snapshot,
    peer_versions,
    reference_loop,
    running,
    tree_cpu_seconds,
    write_apps,
)

# Re-exported: the other benchmarks import these helpers from here.
from test.bench.http_peers import http_get as http_get
from test.bench.http_peers import log_tail as log_tail
from test.support import stop_process as stop_process

ROOT = Path(__file__).resolve().parents[2]
RESULTS_PATH = ROOT / "test" / "bench" / "results" / "http.json"

CONNECTIONS = 32
P99_LIMIT = 2.0  # every processor configuration's p99 within this multiple of the reference's



@dataclass
class WrkRun:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx_3xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    # Server CPU (process and its workers, user + system) per request: unlike req/s,
    # barely moved by other programs competing for the machine.
    cpu_us_per_request: float | None = None

    @property
    def problems(self) -> list[str]:
        found = [f"{n} non-2xx/3xx"] if (n := self.non_2xx_3xx) else []
        found += [f"{n} socket {kind} errors" for kind, n in self.socket_errors.items() if n]
        return found


# -- wrk --------------------------------------------------------------------------
_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk(output: str) -> WrkRun:
    """Reads requests/s, p50/p99 and error counts from ``wrk --latency`` output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    p50 = re.search(r"^\s+50(?:\.0+)?%\s+(\S+)", output, re.M)
    p99 = re.search(r"^\s+99(?:\.0+)?%\s+(\S+)", output, re.M)
    total = re.search(r"^\s+(\d+) requests in", output, re.M)
    if not (rps and p50 and p99 and total):
        raise ValueError(f"cannot read wrk's output:\n{output}")
    run = WrkRun(float(rps.group(1)), to_ms(p50.group(1)), to_ms(p99.group(1)),
                 int(total.group(1)))
    if non_2xx := re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output):
        run.non_2xx_3xx = int(non_2xx.group(1))
    if errors := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                           r"timeout (\d+)", output):
        run.socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                                     map(int, errors.groups()), strict=True))
    return run


def run_wrk(url: str, seconds: int) -> WrkRun:
    # One wrk thread leaves a core for the server on a 2-core machine (PEERS.md).
    command = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 30,
                          check=False, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


def require_wrk() -> str:
    if shutil.which("wrk") is None:
        sys.exit("http_bench: wrk is not installed; run: apt-get install -y wrk")
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).splitlines()[0].strip()


# -- the machine ----------------------------------------------------------------------
def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": model,
            "python": platform.python_version(), "platform": platform.platform()}


def uvloop_version() -> str:
    try:
        return importlib.metadata.version("uvloop")
    except importlib.metadata.PackageNotFoundError:
        sys.exit("http_bench: uvloop is not installed (the processor uses it): "
                 "pip install -e . first")


# -- phases ---------------------------------------------------------------------------
def load_rounds(servers: dict[str, Server], rounds: int, seconds: int, warmup: int
                ) -> dict[str, list[WrkRun]]:
    """Rotates the order each round so drift on the machine spreads over every setup."""
    names = list(servers)
    runs: dict[str, list[WrkRun]] = {name: [] for name in names}
    for round_no in range(rounds):
        shift = round_no % len(names)
        for name in names[shift:] + names[:shift]:
            server = servers[name]
            if warmup:
                run_wrk(server.url, warmup)
            cpu_before = tree_cpu_seconds(server.proc.pid)
            run = run_wrk(server.url, seconds)
            cpu = tree_cpu_seconds(server.proc.pid) - cpu_before
            run.cpu_us_per_request = cpu / run.requests * 1e6 if run.requests else None
            runs[name].append(run)
            print(f"  round {round_no + 1}/{rounds} {name:<24} {run.rps:>9.0f} req/s  "
                  f"p50 {run.p50_ms:6.2f} ms  p99 {run.p99_ms:6.2f} ms  "
                  f"server CPU {run.cpu_us_per_request or 0:6.0f} us/req"
                  + (f"  [{', '.join(run.problems)}]" if run.problems else ""), flush=True)
    return runs


def summarise(setup: Setup, runs: list[WrkRun], reference: dict[str, float] | None
              ) -> dict[str, Any]:
    """Medians, ratios to the reference's medians, and for the processor's rows the
    verdict against the targets (the peers have none: they are there to compare)."""
    row: dict[str, Any] = {
        "name": setup.name, "peer": setup.peer, "kind": setup.kind, "workers": setup.workers,
        "rps": statistics.median(r.rps for r in runs),
        "p50_ms": statistics.median(r.p50_ms for r in runs),
        "p99_ms": statistics.median(r.p99_ms for r in runs),
        "cpu_us_per_request": statistics.median(r.cpu_us_per_request or 0.0 for r in runs),
        "problems": sorted({p for r in runs for p in r.problems}),
        "rounds": [asdict(r) for r in runs],
    }
    if reference is None:
        return row
    row["rps_ratio"] = row["rps"] / reference["rps"]
    row["p99_ratio"] = row["p99_ms"] / reference["p99_ms"]
    if reference["cpu_us_per_request"]:
        row["cpu_ratio"] = row["cpu_us_per_request"] / reference["cpu_us_per_request"]
    if setup.peer is not None:
        row["targets"] = "(peer, none)"
        return row
    failures = []
    if setup.min_rps_ratio is not None and row["rps_ratio"] < setup.min_rps_ratio:
        failures.append(f"req/s {row['rps_ratio']:.2f}x < {setup.min_rps_ratio}x")
    if row["p99_ratio"] > P99_LIMIT:
        failures.append(f"p99 {row['p99_ratio']:.2f}x > {P99_LIMIT:g}x")
    if row["problems"]:
        failures.append("errors")
    row["targets"] = (f"req/s >= {setup.min_rps_ratio}x, " if setup.min_rps_ratio else "") + \
        f"p99 <= {P99_LIMIT:g}x"
    row["pass"] = not failures
    row["failures"] = failures
    return row


# -- report -----------------------------------------------------------------------------
def peer_lines(rows: list[dict[str, Any]]) -> list[str]:
    """req/s of the process kind over each same-sized peer's, then each floor against
    the reference and the processor row it bounds; informational, so worded
    ``(no target)`` to stay out of ``grep ': .*(target'``."""
    by_name = {row["name"]: row for row in rows}
    rps = {name: row["rps"] for name, row in by_name.items()}
    lines = [f"http {ours.name.removeprefix('processor ')} vs {peer.name}: "
             f"{rps[ours.name] / rps[peer.name]:.2f}x (no target)"
             for ours in (PROCESS, PIPELINED) for peer in (UVICORN, GUNICORN)]
    for floor, ours, what in ((FLOOR_PROCESS, PROCESS, "2 bare worker processes"),
                              (FLOOR_THREAD, THREAD, "4 threads")):
        row, mine = by_name[floor.name], by_name[ours.name]
        lines.append(f"http {ours.name.removeprefix('processor ')} floor (httptools + {what}) "
                     f"vs reference: {row['rps_ratio']:.2f}x (no target); CPU/req "
                     f"{row.get('cpu_ratio', 0):.2f}x the reference's; {ours.name}: "
                     f"{mine['rps'] / row['rps']:.2f}x the floor's req/s, "
                     f"{mine['cpu_us_per_request'] / (row['cpu_us_per_request'] or 1):.2f}x "
                     "the floor's CPU/req")
    return lines


def target_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One ``<name>: <ratio> (target <t>)`` line per target of each processor row."""
    lines = []
    for setup, row in zip(SETUPS, rows, strict=True):
        name = setup.summary
        if not name:
            continue  # the reference and the peers: no target
        if setup.min_rps_ratio is not None:
            lines.append(f"{name}: {row['rps_ratio']:.2f} (target {setup.min_rps_ratio})")
        lines.append(f"{name}_p99: {row['p99_ratio']:.2f} (target <= {P99_LIMIT})")
    return lines


def _cpu_cell(row: dict[str, Any]) -> str:
    ratio = 1.0 if "rps_ratio" not in row else row.get("cpu_ratio")
    return f"{row['cpu_us_per_request']:.0f}" + (f" ({ratio:.2f}x)" if ratio is not None else "")


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("configuration", "req/s", "p50 ms", "p99 ms", "req/s vs ref", "p99 vs ref",
              "CPU us/req (vs ref)", "targets", "result")
    lines = []
    for row in rows:
        ratio = row.get("rps_ratio")
        verdict = "-" if "pass" not in row else ("PASS" if row["pass"] else
                                                 "FAIL: " + "; ".join(row["failures"]))
        if row["problems"]:
            verdict += " [" + ", ".join(row["problems"]) + "]"
        lines.append((row["name"], f"{row['rps']:.0f}", f"{row['p50_ms']:.2f}",
                      f"{row['p99_ms']:.2f}", "1.00x" if ratio is None else f"{ratio:.2f}x",
                      "1.00x" if ratio is None else f"{row['p99_ratio']:.2f}x",
                      _cpu_cell(row),
                      row.get("targets", "(reference)"), verdict))
    widths = [max(len(str(line[i])) for line in [header, *lines]) for i in range(len(header))]
    text = [" | ".join(str(cell).ljust(w) for cell, w in zip(line, widths, strict=True))
            for line in [header, *lines]]
    text.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(text)


def format_memory(memory: dict[str, Any]) -> str:
    def workers(snapshot: dict[str, Any]) -> str:
        sizes = [f"{mib:.1f}" for mib in snapshot["workers_mib"].values() if mib is not None]
        return f"{len(sizes)} workers " + " / ".join(sizes) + " MiB" if sizes else "no workers"

    start, end = memory["after_start"], memory["after_load"]
    return (f"RSS, process kind x2: after load: processor {end['processor_mib']:.1f} MiB, "
            f"{workers(end)}; right after start: processor {start['processor_mib']:.1f} MiB, "
            f"{workers(start)}")


def whole_number(minimum: int) -> Any:
    """An argparse type: an integer >= minimum; a trailing 's' is allowed (wrk's "8s")."""
    def parse(text: str) -> int:
        value = int(text.removesuffix("s"))
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value
    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=whole_number(1), default=3,
                        help="rounds per configuration")
    parser.add_argument("--duration", type=whole_number(1), default=8, help="seconds per wrk run")
    parser.add_argument("--warmup", type=whole_number(0), default=1,
                        help="warm-up seconds before each measured run")
    parser.add_argument("--cold-starts", type=whole_number(1), default=5, help="launches to time")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH, help="JSON results file")
    return parser.parse_args(argv)


def unwind_on_sigterm() -> None:
    """A SIGTERM (CI timeout, kill) unwinds like Ctrl-C, so the finally blocks stop servers."""
    def unwind(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut clean-up short
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, unwind)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    unwind_on_sigterm()
    wrk_version = require_wrk()
    loop_version = uvloop_version()
    versions = peer_versions()
    began = time.monotonic()
    info = machine()
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    print(f"HTTP benchmark, {date}: {info['nproc']} CPUs ({info['cpu']}), Python "
          f"{info['python']}, {wrk_version}")
    print(f"Load: wrk -t1 -c{CONNECTIONS} -d{args.duration}s --latency after a {args.warmup}s "
          f"warm-up; {args.rounds} interleaved rounds; medians reported.")
    print("Peers: " + ", ".join(f"{name} {version}" for name, version in versions.items()))
    with tempfile.TemporaryDirectory(prefix="http-bench-") as tmp:
        workdir = Path(tmp)
        write_apps(workdir)
        with running(SETUPS, workdir) as servers:
            print(f"Event loop: uvloop {loop_version} in both the reference (it reports "
                  f"{reference_loop(servers[REFERENCE.name])}) and the processor (processor.cli "
                  "installs uvloop's policy when it is importable, as it is here).", flush=True)
            process = servers[PROCESS.name]
            memory = {"after_start": memory_snapshot(process)}
            runs = load_rounds(servers, args.rounds, args.duration, args.warmup)
            memory["after_load"] = memory_snapshot(process)
        print(f"Timing {args.cold_starts} cold starts...", flush=True)
        cold = cold_start(workdir, args.cold_starts)
    reference = summarise(REFERENCE, runs[REFERENCE.name], None)
    rows = [reference, *(summarise(s, runs[s.name], reference) for s in SETUPS[1:])]
    print()
    print(format_table(rows))
    print()
    print("\n".join(cold_start_lines(cold)))
    print(format_memory(memory))
    print("\n".join(peer_lines(rows)))
    print("\n".join(target_lines(rows)))
    print("\n".join(summary_lines(cold)))
    elapsed = time.monotonic() - began
    print(f"\nTotal time {elapsed:.0f} s; results in {args.output}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "date": date, "machine": info, "wrk": wrk_version, "uvloop": loop_version,
        "peers": versions,
        "settings": {"rounds": args.rounds, "duration_s": args.duration,
                     "warmup_s": args.warmup, "connections": CONNECTIONS, "threads": 1},
        "configurations": rows, "cold_start": cold, "rss": memory, "elapsed_s": elapsed,
    }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
