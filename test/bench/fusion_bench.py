#!/usr/bin/env python3
"""Fusion benchmark: the same 3-step chains run three ways, in one run.

Run as ``python test/bench/fusion_bench.py [--requests 200 --rounds 3]`` (needs the
multi-function processor). Two chains: three trivial handlers (the body passed
on unchanged; ``--kind`` picks their worker kind) and the image chain of
``examples/chain`` (transpose, grayscale, thumbnail on a 640x480 JPEG; ``--image``
changes the size). Each runs (a) piped through the client: three processors, the client posting each
output to the next; (b) as a workflow in its own processor calling the three
over HTTP; (c) as the same workflow fused with the three in one processor.

Every figure is a ratio measured in the same run (DESIGN.md section 7): the
setups are interleaved over rounds, one request at a time (latency, not
throughput), and the medians of the rounds are reported. The per-hop cost is
(p50 of a 3-step workflow - p50 of a 1-step one) / 2, fused and remote. CPU per
chain is the user + system time of every process serving the setup (processors
and their workers, from /proc) divided by the chains run; the benchmark client
is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from test.bench.http_bench import machine, tree_cpu_seconds
from test.support import free_port
from test.workflow_support import (
    CHAIN_STEPS,
    Processor,
    chain_copy,
    function_folder,
    function_yaml,
    sample_jpeg,
)

TRIVIAL = ("t1", "t2", "t3")
WAYS = ("(a) piped", "(b) remote", "(c) fused")
HANDLERS = {"async": "async def handler(context, event):\n    return event.body\n",
            "process": "def handler(context, event):\n    return event.body\n",
            "thread": "def handler(context, event):\n    return event.body\n"}
# The targets: fused hop cost at most 1/5 of a remote one; the fused image chain
# at least 35% faster (p50) than client piping; less CPU per chain fused.
HOP_TARGET = 0.2
IMAGE_P50_TARGET = 0.65
CPU_TARGET = 1.0

Send = Callable[[aiohttp.ClientSession], Awaitable[bytes]]


@dataclass
class Setup:
    name: str
    send: Send
    pids: list[int]
    latencies: list[list[float]] = field(default_factory=list)  # per round, seconds
    cpu: list[float] = field(default_factory=list)  # per round, seconds per chain

    def p(self, quantile: float) -> float:
        """The median over rounds of this quantile, in ms."""
        per_round = []
        for values in self.latencies:
            ordered = sorted(values)
            per_round.append(ordered[min(len(ordered) - 1, int(len(ordered) * quantile))])
        return statistics.median(per_round) * 1000


async def post(session: aiohttp.ClientSession, url: str, body: bytes,
               content_type: str) -> tuple[bytes, str]:
    async with session.post(url, data=body, headers={"Content-Type": content_type}) as reply:
        data = await reply.read()
        if reply.status >= 300:
            raise RuntimeError(f"{url}: {reply.status} {data[:200]!r}")
        return data, reply.headers.get("Content-Type", "")


def piped(urls: list[str], body: bytes, content_type: str) -> Send:
    async def send(session: aiohttp.ClientSession) -> bytes:
        data, ctype = body, content_type
        for url in urls:
            data, ctype = await post(session, url, data, ctype)
        return data
    return send


def direct(url: str, body: bytes, content_type: str) -> Send:
    async def send(session: aiohttp.ClientSession) -> bytes:
        return (await post(session, url, body, content_type))[0]
    return send


async def measure(setup: Setup, requests: int) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(5):  # warm: connections, worker start, imports
            await setup.send(session)
        cpu_before = sum(tree_cpu_seconds(pid) for pid in setup.pids)
        times = []
        for _ in range(requests):
            started = time.perf_counter()
            await setup.send(session)
            times.append(time.perf_counter() - started)
        cpu_after = sum(tree_cpu_seconds(pid) for pid in setup.pids)
    setup.latencies.append(times)
    setup.cpu.append((cpu_after - cpu_before) / requests)


def trivial_folder(parent: Path, name: str, port: int, kind: str) -> Path:
    # Not main.py: the image functions' module is main, and what is measured here is the
    # hop, not module isolation (test_workflow_chain.py checks that).
    path = function_folder(parent, function_yaml(name, port, handler="passthrough:handler",
                                                 workers=4 if kind != "process" else 2,
                                                 runtime_attributes={"workerKind": kind}))
    (path.parent / "passthrough.py").write_text(HANDLERS[kind])
    return path


def workflow_folder(parent: Path, name: str, port: int, functions: tuple[str, ...]) -> Path:
    steps = [{"name": f"step{i + 1}", "function": f} for i, f in enumerate(functions)]
    return function_folder(parent, function_yaml(name, port, workflow={"steps": steps},
                                                 workers=16))


def start_all(tmp: Path, kind: str) -> tuple[list[Processor], dict[str, str]]:
    """Apart: one processor per step function, one for the remote workflows; fused: one
    processor for everything. Returns the processors and the URL of each entry point."""
    procs: list[Processor] = []
    urls: dict[str, str] = {}
    apart_ports = chain_copy(tmp / "apart")
    for name in CHAIN_STEPS:
        procs.append(Processor([tmp / "apart" / name / "function.yaml"], tmp / f"p-{name}"))
        urls[f"apart:{name}"] = f"http://127.0.0.1:{apart_ports[name]}/"
    for name in TRIVIAL:
        port = free_port()
        procs.append(Processor([trivial_folder(tmp / "apart", name, port, kind)],
                               tmp / f"p-{name}"))
        urls[f"apart:{name}"] = f"http://127.0.0.1:{port}/"
    remote = tmp / "remote"
    (remote / "chain").mkdir(parents=True)
    (remote / "chain" / "function.yaml").write_text(
        (tmp / "apart" / "chain" / "function.yaml").read_text())
    urls["remote:chain"] = f"http://127.0.0.1:{apart_ports['chain']}/"
    fused_ports = chain_copy(tmp / "fused")
    urls["fused:chain"] = f"http://127.0.0.1:{fused_ports['chain']}/"
    for where in ("remote", "fused"):
        for name, steps in (("trivial3", TRIVIAL), ("trivial1", TRIVIAL[:1])):
            port = free_port()
            workflow_folder(tmp / where, name, port, steps)
            urls[f"{where}:{name}"] = f"http://127.0.0.1:{port}/"
    for name in TRIVIAL:
        port = free_port()
        trivial_folder(tmp / "fused", name, port, kind)
        urls[f"fused:{name}"] = f"http://127.0.0.1:{port}/"
    addresses = {n: urls[f"apart:{n}"].rstrip("/") for n in (*CHAIN_STEPS, *TRIVIAL)}
    procs.append(Processor([remote], tmp / "p-remote", addresses=addresses))
    procs.append(Processor([tmp / "fused"], tmp / "p-fused"))
    for proc in procs:
        proc.wait_ready(60)
    return procs, urls


def setups(procs: list[Processor], urls: dict[str, str], size: tuple[int, int]
           ) -> dict[str, Setup]:
    image, text = sample_jpeg(*size), b"ping"
    steps_apart = procs[:6]  # transpose, grayscale, thumbnail, t1, t2, t3
    image_apart = [p.proc.pid for p in steps_apart[:3]]
    trivial_apart = [p.proc.pid for p in steps_apart[3:]]
    remote, fused = procs[6].proc.pid, procs[7].proc.pid
    octet = "application/octet-stream"
    return {
        "trivial (a) piped": Setup("trivial (a) piped", piped(
            [urls[f"apart:{n}"] for n in TRIVIAL], text, octet), trivial_apart),
        "trivial (b) remote": Setup("trivial (b) remote", direct(
            urls["remote:trivial3"], text, octet), [remote, *trivial_apart]),
        "trivial (c) fused": Setup("trivial (c) fused", direct(
            urls["fused:trivial3"], text, octet), [fused]),
        "trivial 1 step remote": Setup("trivial 1 step remote", direct(
            urls["remote:trivial1"], text, octet), [remote, *trivial_apart]),
        "trivial 1 step fused": Setup("trivial 1 step fused", direct(
            urls["fused:trivial1"], text, octet), [fused]),
        "image (a) piped": Setup("image (a) piped", piped(
            [urls[f"apart:{n}"] for n in CHAIN_STEPS], image, "image/jpeg"), image_apart),
        "image (b) remote": Setup("image (b) remote", direct(
            urls["remote:chain"], image, "image/jpeg"), [remote, *image_apart]),
        "image (c) fused": Setup("image (c) fused", direct(
            urls["fused:chain"], image, "image/jpeg"), [fused]),
    }


async def same_outputs(table: dict[str, Setup]) -> None:
    """The three ways must give the same bytes, or the timings compare different work."""
    async with aiohttp.ClientSession() as session:
        for chain in ("trivial", "image"):
            outputs = {await table[f"{chain} {way}"].send(session) for way in WAYS}
            if len(outputs) != 1:
                raise SystemExit(f"{chain}: the three setups answered differently")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200, help="chains per setup per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kind", choices=sorted(HANDLERS), default="async",
                        help="worker kind of the trivial handlers (default: %(default)s)")
    parser.add_argument("--image", default="640x480",
                        help="size of the image sent through the image chain (WxH); the "
                             "smaller, the larger the share of the hops in a chain's time")
    args = parser.parse_args()
    width, _, height = args.image.partition("x")
    size = (int(width), int(height))
    tmp = Path(tempfile.mkdtemp(prefix="fusion-bench-"))
    procs: list[Processor] = []
    try:
        procs, urls = start_all(tmp, args.kind)
        table = setups(procs, urls, size)
        asyncio.run(same_outputs(table))
        for _ in range(args.rounds):
            for setup in table.values():
                asyncio.run(measure(setup, args.requests))
    finally:
        for proc in procs:
            proc.stop()
    host = machine()
    print(f"machine: {host['nproc']} cpu ({host['cpu']}), Python {host['python']}; "
          f"{args.rounds} rounds x {args.requests} chains, one at a "
          f"time; trivial handlers: {args.kind} workers; image {args.image}")
    print(f"{'setup':<24} {'p50 ms':>9} {'p99 ms':>9} {'CPU ms/chain':>13}")
    for setup in table.values():
        print(f"{setup.name:<24} {setup.p(0.5):>9.3f} {setup.p(0.99):>9.3f} "
              f"{statistics.median(setup.cpu) * 1000:>13.3f}")

    def p50(name: str) -> float:
        return table[name].p(0.5)

    def cpu(name: str) -> float:
        return statistics.median(table[name].cpu)

    fused_hop = (p50("trivial (c) fused") - p50("trivial 1 step fused")) / 2
    remote_hop = (p50("trivial (b) remote") - p50("trivial 1 step remote")) / 2
    print(f"per hop: fused {fused_hop:.3f} ms, remote {remote_hop:.3f} ms")
    print(f"fused_hop_vs_remote_hop: {fused_hop / remote_hop:.2f} (target {HOP_TARGET})")
    print(f"image_p50_fused_vs_piped: {p50('image (c) fused') / p50('image (a) piped'):.2f} "
          f"(target {IMAGE_P50_TARGET})")
    for chain in ("image", "trivial"):
        for other in WAYS[:2]:
            ratio = cpu(f"{chain} (c) fused") / cpu(f"{chain} {other}")
            print(f"{chain}_cpu_fused_vs_{other[4:]}: {ratio:.2f} (target <{CPU_TARGET})")


if __name__ == "__main__":
    main()
