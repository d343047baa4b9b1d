#!/usr/bin/env python3
"""OpenInference benchmark: the processor's openinference trigger against MLServer and KServe.

Run as ``python test/bench/openinference_bench.py`` (``make bench-openinference``).
Every server serves the same "double the input" model: MLServer a custom
``MLModel`` (one model instance, ``parallel_workers: 0``), KServe a ``kserve.Model``
(kserve_peer.py, one process), each installed on first use into its own venv
(/opt/mlserver-venv, /opt/kserve-venv: their pins clash with ours), the processor
the documented numpy handler in each worker kind chosen with ``--servers``
(default: one process worker, the issue's configuration, and the async kind).
The same load drives each: a client process keeping N requests in flight (16 by
default) for a fixed time after a warm-up, the request bytes encoded once (REST
through aiohttp, gRPC through grpc.aio with tritonclient's messages), so the
servers, not the client's tensor encoding, are measured. Rows: JSON tensors
(small and 1x3x224x224), gRPC raw contents, and REST with the binary extension
(MLServer lacks it and gets the same tensors in JSON). Rounds are interleaved,
medians reported, ratios to each peer from the same run; ``--baseline DIR`` also
runs each processor from another checkout. One summary line per row, server and
peer: ``openinference <row> (<server>) vs <peer>: <ratio> (target 1.5)``. The gRPC
rows also run floors (openinference_floor.py): bare servers doing the same doubling in
their loop, through one worker process from grpc.aio, and through one from grpc's sync
server, printed as ``(no target)``: a floor under 1.5x KServe says no server taking
that path meets the gRPC targets. Results go to stdout (a table) and to
``results/openinference.json``.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from test.bench.http_bench import http_get, log_tail, machine, stop_process, unwind_on_sigterm
from test.bench.kserve_peer import KSERVE_VENV, ensure_venv, launch_kserve, venv_version
from test.bench.openinference_client import CLIENT
from test.bench.openinference_floor import FLOORS, grpc_listening, launch_grpc_floor
from test.support import free_port, platform_config

ROOT = Path(__file__).resolve().parents[2]
RESULTS_PATH = ROOT / "test" / "bench" / "results" / "openinference.json"
MLSERVER_VENV = Path("/opt/mlserver-venv")
READY_TIMEOUT = 90.0
TARGET_RATIO = 1.5

MLSERVER_MODEL = """
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class DoubleModel(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        return InferenceResponse(model_name=self.name,
                                 outputs=[NumpyCodec.encode_output("output0", x * 2)])
"""

HANDLERS = {
    "double_async": "async def handler(context, event):\n"
                    "    return {'output0': event.inputs['input0'] * 2}\n",
    "double_sync": "def handler(context, event):\n"
                   "    return {'output0': event.inputs['input0'] * 2}\n",
}

# The load: N tasks, each sending an inference request and awaiting its answer in a
# loop; requests that start inside the measured window count. Prints one JSON line.
# The request is encoded once, before the clock starts, and every answer is only
# read (the first one is decoded and checked): the client's own tensor encoding
# (tritonclient spends ~110 ms per 150k-number JSON tensor) would otherwise bound
# every server alike. Same bytes for every server in a row.
@dataclass(frozen=True)
class Row:
    name: str
    protocol: str  # rest | grpc
    shape: tuple[int, ...]
    binary: bool  # REST only; MLServer always gets JSON


ROWS = (
    Row("REST small, JSON both", "rest", (1, 16), False),
    Row("REST large, JSON both", "rest", (1, 3, 224, 224), False),
    Row("gRPC small 1x16", "grpc", (1, 16), False),
    Row("gRPC large 1x3x224x224", "grpc", (1, 3, 224, 224), False),
    Row("REST small, binary (MLServer JSON)", "rest", (1, 16), True),
    Row("REST large, binary (MLServer JSON)", "rest", (1, 3, 224, 224), True),
)


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    rest_port: int
    grpc_port: int
    log: Path
    binary_rest: bool  # speaks the binary tensor extension
    floor: bool = False  # openinference_floor.py: gRPC rows only, no target


def launch_mlserver(workdir: Path) -> Server:
    folder = workdir / "mlserver"
    model = folder / "double"
    model.mkdir(parents=True)
    (model / "double_model.py").write_text(MLSERVER_MODEL)
    (model / "model-settings.json").write_text(json.dumps(
        {"name": "double", "implementation": "double_model.DoubleModel"}))
    rest, grpc_port = free_port(), free_port()
    # parallel_workers 0: inference in the server process (no extra hop; the setting
    # PEERS.md found stable); MLServer's own metrics server on a free port.
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": rest, "grpc_port": grpc_port,
        "metrics_port": free_port(), "parallel_workers": 0, "debug": False}))
    log = workdir / "mlserver.log"
    mlserver = ensure_venv(MLSERVER_VENV, "mlserver").with_name("mlserver")
    proc = subprocess.Popen([str(mlserver), "start", str(folder)], cwd=model,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return Server("MLServer", proc, rest, grpc_port, log, binary_rest=False)


def launch_processor(workdir: Path, name: str, handler: str, kind: str, workers: int,
                     per_worker: int = 1, root: Path = ROOT) -> Server:
    fn_dir = workdir / name
    fn_dir.mkdir()
    (fn_dir / f"{handler}.py").write_text(HANDLERS[handler])
    rest, grpc_port = free_port(), free_port()
    config = {"metadata": {"name": "double"}, "spec": {
        "handler": f"{handler}:handler", "disableDefaultHTTPTrigger": True,
        "runtimeAttributes": {"workerKind": kind, "eventsPerWorker": per_worker},
        "triggers": {"infer": {"kind": "openinference", "numWorkers": workers, "attributes": {
            "model_name": "double", "rest_port": rest, "grpc_port": grpc_port}}}}}
    (fn_dir / "function.yaml").write_text(yaml.safe_dump(config))
    (fn_dir / "platform.yaml").write_text(yaml.safe_dump(
        platform_config(free_port(), free_port(), function_level="warn")))
    log = fn_dir / "processor.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "processor.cli", "--config", str(fn_dir / "function.yaml"),
         "--platform-config", str(fn_dir / "platform.yaml"), "--listen-host", "127.0.0.1"],
        cwd=root, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return Server(name, proc, rest, grpc_port, log, binary_rest=True)


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited:\n{log_tail(server.log)}")
        if server.floor:
            if grpc_listening(server.grpc_port):
                return
            continue
        answer = http_get(server.rest_port, "/v2/models/double/ready")
        if answer is not None and answer[0] == 200:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{server.name} not ready in {READY_TIMEOUT}s:\n{log_tail(server.log)}")


# name -> (label, handler, worker kind, workers, eventsPerWorker); PEERS are the servers
# compared with. "pipelined1" is process1 with the opt-in pipelining (README "Worker kinds").
PROCESSORS = {
    "async": ("processor async", "double_async", "async", 1, 1),
    "process1": ("processor process x1", "double_sync", "process", 1, 1),
    "pipelined1": ("processor process x1, 2 per worker", "double_sync", "process", 1, 2),
    "process2": ("processor process x2", "double_sync", "process", 2, 1),
}
PEERS = {"mlserver": "MLServer", "kserve": "KServe"}  # name -> label
PEER_VENVS = {"mlserver": MLSERVER_VENV, "kserve": KSERVE_VENV}
DEFAULT_SERVERS = "mlserver,kserve,process1,pipelined1,async," + ",".join(FLOORS)


@contextlib.contextmanager
def running(workdir: Path, names: list[str], baseline: Path | None = None
            ) -> Iterator[list[Server]]:
    servers: list[Server] = []
    try:
        for name in names:
            if name == "mlserver":
                servers.append(launch_mlserver(workdir))
            elif name == "kserve":
                servers.append(Server("KServe", *launch_kserve(workdir), binary_rest=True))
            elif name in FLOORS:
                proc, port, log = launch_grpc_floor(workdir, name)
                servers.append(Server(FLOORS[name][0], proc, 0, port, log,
                                      binary_rest=False, floor=True))
            else:
                label, handler, kind, workers, per_worker = PROCESSORS[name]
                servers.append(launch_processor(workdir, label, handler, kind, workers,
                                                per_worker))
                if baseline is not None:  # the same, from another checkout (before/after)
                    servers.append(launch_processor(workdir, f"{label} (baseline)", handler,
                                                    kind, workers, per_worker, baseline))
        for server in servers:
            wait_ready(server)
        yield servers
    finally:
        for server in servers:
            stop_process(server.proc)


def measure(server: Server, row: Row, args: argparse.Namespace) -> dict[str, Any]:
    port = server.grpc_port if row.protocol == "grpc" else server.rest_port
    cfg = {"protocol": row.protocol, "url": f"127.0.0.1:{port}", "model": "double",
           "shape": list(row.shape), "binary": row.binary and server.binary_rest,
           "concurrency": args.concurrency, "warmup": args.warmup, "seconds": args.seconds}
    out = subprocess.run([sys.executable, "-c", CLIENT, json.dumps(cfg)], capture_output=True,
                         text=True, timeout=args.warmup + args.seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"client failed against {server.name} ({row.name}):\n{out.stderr}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def bench(servers: list[Server], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for row in ROWS:
        if args.rows and not any(word.lower() in row.name.lower() for word in args.rows):
            continue
        active = [s for s in servers if not (s.floor and row.protocol == "rest")]
        runs: dict[str, list[dict[str, Any]]] = {s.name: [] for s in active}
        for round_ in range(args.rounds):
            order = active[round_ % len(active):] + active[:round_ % len(active)]
            for server in order:
                runs[server.name].append(measure(server, row, args))
        medians = {name: statistics.median(r["rps"] for r in got) for name, got in runs.items()}
        peers = [s.name for s in active if s.name in PEERS.values()]
        for server in active:
            rps = medians[server.name]
            vs = {peer: rps / medians[peer] if medians[peer] else None for peer in peers}
            rows.append({
                "row": row.name, "server": server.name, "floor": server.floor, "rps": rps,
                "p99_ms": statistics.median(r["p99_ms"] for r in runs[server.name]),
                "ratio": rps / medians[active[0].name] if medians[active[0].name] else None,
                "vs": vs, "errors": sum(r["errors"] for r in runs[server.name]),
                "binary": row.binary and server.binary_rest and row.protocol == "rest",
                "runs": runs[server.name]})
            print(f"  {row.name:34} {server.name:22} {rps:8.0f} req/s  "
                  f"p99 {rows[-1]['p99_ms']:7.1f} ms  " + "  ".join(
                      f"{peer} x{ratio:.2f}" for peer, ratio in vs.items() if ratio), flush=True)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """Markdown, one ``vs <peer>`` column per peer in the run."""
    peers = list(rows[0]["vs"]) if rows else []
    lines = ["| row | server | req/s (median) | " + "".join(f"vs {p} | " for p in peers)
             + "p99 ms |", "|---|---|---|" + "---|" * len(peers) + "---|"]
    for r in rows:
        lines.append(f"| {r['row']} | {r['server']} | {r['rps']:.0f} | "
                     + "".join(f"{r['vs'][p] or 0:.2f} | " for p in peers)
                     + f"{r['p99_ms']:.1f} |")
    return "\n".join(lines)


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    """One ``<name>: <ratio> (target 1.5)`` line per processor server, row and peer."""
    return [f"openinference {r['row']} ({r['server']}) vs {peer}: {ratio or 0:.2f} "
            + ("(no target)" if r["floor"] else f"(target {TARGET_RATIO})")
            for r in rows if r["server"] not in PEERS.values()
            for peer, ratio in r["vs"].items()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--servers", default=DEFAULT_SERVERS,
                        help=f"comma-separated, first is the reference: "
                             f"{', '.join([*PEERS, *PROCESSORS, *FLOORS])}")
    parser.add_argument("--rows", nargs="*", default=[],
                        help="only rows whose name contains one of these words")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout of another commit: each processor runs from it too")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    unwind_on_sigterm()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, running(
            Path(tmp), args.servers.split(","), args.baseline) as servers:
        versions = {label: venv_version(PEER_VENVS[name], name)
                    for name, label in PEERS.items() if name in args.servers.split(",")}
        print("Peers: " + ", ".join(f"{label} {v}" for label, v in versions.items()), flush=True)
        rows = bench(servers, args)
    print()
    print(format_table(rows))
    print()
    print("\n".join(summary_lines(rows)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({
        "when": datetime.datetime.now(datetime.UTC).isoformat(), "machine": machine(),
        "settings": vars(args) | {"output": str(args.output), "baseline": str(args.baseline)},
        "peers": versions, "rows": rows}, indent=1))
    print(f"Total time {time.monotonic() - started:.0f} s; results in {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
