#!/usr/bin/env python3
"""Async invocation benchmark: what durability costs next to a plain sync call.

Run as ``python test/bench/async_bench.py [--seconds 2 --rounds 2]``. One
processor (hello handler, 2 process workers, async on with SQLite in a temp dir)
serves both the reference and the measured load, so every figure is a ratio in
the same run: (a) sync requests/s, (b) async accepts/s (202s, SQLite, group
commit), (c) the same against a second processor on NATS JetStream, each driven
by a closed-loop aiohttp client (32 in flight), rounds interleaved, medians;
(d) p99 latency of the 202 with an open-loop client at 1,000 calls/s; (e)
completions/s: callbacks received by a local receiver for a burst of calls;
(f) the processor's RSS with 100,000 calls queued against an empty store (the
queue lives on disk, so memory should not grow with depth).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script
from test.async_support import CallbackReceiver, async_config
from test.brokers import NatsServer
from test.conftest import RunningProcessor
from test.support import free_port

CONCURRENCY = 32


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def closed_loop(url: str, seconds: float, headers: dict[str, str], ok: int) -> float:
    """Requests/s with CONCURRENCY requests in flight for ``seconds``."""
    done = 0
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as s:
        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with s.post(url, data=b"1", headers=headers) as r:
                    await r.read()
                    if r.status == ok:
                        done += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return done / (time.perf_counter() - start)


def drain(proc: RunningProcessor) -> None:
    """Waits until the calls accepted so far have run (the next round starts clean)."""
    deadline = time.monotonic() + 300
    while proc.metric("nuclio_processor_async_queue_depth") > 0 and time.monotonic() < deadline:
        time.sleep(0.1)


async def open_loop_p99(url: str, rate: int, seconds: float, headers: dict[str, str],
                        ok: int = 202) -> float:
    """p99 (ms) of the 202 when calls arrive at ``rate``/s whatever the answers do."""
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256)) as s:
        async def one() -> None:
            t0 = time.perf_counter()
            async with s.post(url, data=b"1", headers=headers) as r:
                await r.read()
                if r.status == ok:
                    latencies.append(time.perf_counter() - t0)

        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    latencies.sort()
    return latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan")


def completions_per_s(url: str, receiver: CallbackReceiver, n: int) -> float:
    before = len(receiver.calls())
    start = time.perf_counter()
    asyncio.run(closed_loop_n(url, n, {"X-Callback-Url": receiver.url}))
    while len(receiver.calls()) - before < n:
        if time.perf_counter() - start > 120:
            break
        time.sleep(0.01)
    return (len(receiver.calls()) - before) / (time.perf_counter() - start)


async def closed_loop_n(url: str, n: int, headers: dict[str, str]) -> None:
    sem = asyncio.Semaphore(CONCURRENCY)
    async with aiohttp.ClientSession() as s:
        async def one() -> None:
            async with sem, s.post(url, data=b"1", headers=headers) as r:
                await r.read()

        await asyncio.gather(*(one() for _ in range(n)))


async def fill_store(directory: str, n: int) -> None:
    from invocations.config import Retention
    from invocations.sqlite_store import SqliteStore
    from invocations.store import Call
    from runtime.logger import Logger

    store = SqliteStore(directory, Retention(), Logger("bench", 40, "json"))
    store.open()
    await store.start()
    due = time.time() + 86400  # not due: they stay queued while we measure
    for chunk in range(0, n, 5000):
        calls = []
        for i in range(chunk, min(n, chunk + 5000)):
            c = Call(id=f"q{i}", function="hello", method="POST", path="/", query={},
                     headers={"X-Call-Id": f"q{i}"}, body=b"x" * 100, content_type="",
                     callback_url=None, accepted_ns=time.time_ns(), max_attempts=10,
                     due_at=due)
            c.digest = c.compute_digest()
            calls.append(c)
        await asyncio.gather(*(store.accept(c, 10 ** 9) for c in calls))
    await store.close()


def start(config: dict[str, Any], workdir: Path) -> RunningProcessor:
    workdir.mkdir(parents=True, exist_ok=True)
    proc = RunningProcessor(config, workdir=workdir)
    proc.wait_ready(30)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--queued", type=int, default=100_000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="async-bench-"))
    receiver = CallbackReceiver().start()
    nats = NatsServer(tmp / "nats").start()
    procs: list[RunningProcessor] = []
    try:
        port, nport = free_port(), free_port()
        # maxInflight 8 on 2 workers: calls wait in the pool rather than for a commit (no
        # sync traffic competes in the completion round; the default would be 1).
        big = {"maxQueued": 10 ** 7, "maxInflight": 8}
        procs.append(start(async_config("hello:handler", port, str(tmp / "store"),
                                        name="hello", **big), tmp / "p1"))
        procs.append(start(async_config("hello:handler", nport, "/unused", name="hello",
                                        backend="nats", nats={"url": nats.url}, **big),
                           tmp / "p2"))
        time.sleep(1.0)  # NATS connect
        sync_url = f"http://127.0.0.1:{port}/"
        async_url = f"http://127.0.0.1:{port}/async-function/hello"
        nats_url = f"http://127.0.0.1:{nport}/async-function/hello"
        rows: dict[str, list[float]] = {"sync": [], "sqlite": [], "nats": []}
        for _ in range(args.rounds):
            rows["sync"].append(asyncio.run(closed_loop(sync_url, args.seconds, {}, 200)))
            rows["sqlite"].append(asyncio.run(closed_loop(async_url, args.seconds, {}, 202)))
            rows["nats"].append(asyncio.run(closed_loop(nats_url, args.seconds, {}, 202)))
        med = {k: statistics.median(v) for k, v in rows.items()}
        drain(procs[0])
        sync_p99 = asyncio.run(open_loop_p99(sync_url, 1000, args.seconds, {}, ok=200))
        p99 = asyncio.run(open_loop_p99(async_url, 1000, args.seconds, {}))
        drain(procs[0])
        completions = completions_per_s(async_url, receiver, 2000)
        for p in procs:
            p.stop()
        procs.clear()
        # RSS: the same processor on an empty store vs one holding --queued calls.
        empty = start(async_config("hello:handler", free_port(), str(tmp / "empty"),
                                   name="hello"), tmp / "p3")
        procs.append(empty)
        time.sleep(1.0)
        rss_empty = rss_mib(empty.proc.pid)
        asyncio.run(fill_store(str(tmp / "full"), args.queued))
        full = start(async_config("hello:handler", free_port(), str(tmp / "full"),
                                  name="hello", maxQueued=10 ** 7), tmp / "p4")
        procs.append(full)
        time.sleep(1.0)
        depth = full.metric("nuclio_processor_async_queue_depth")
        rss_full = rss_mib(full.proc.pid)
    finally:
        for p in procs:
            p.stop()
        nats.stop()
        receiver.close()
    print(f"{'measure':<42} {'value':>12}")
    for name, value in (("sync req/s (reference)", med["sync"]),
                        ("SQLite async accepts/s", med["sqlite"]),
                        ("NATS async accepts/s", med["nats"]),
                        ("p99 of a sync 200 at 1,000 req/s (ms)", sync_p99),
                        ("p99 of the 202 at 1,000 calls/s (ms)", p99),
                        ("completions/s (callbacks received)", completions),
                        ("processor RSS, empty store (MiB)", rss_empty),
                        (f"processor RSS, {int(depth)} queued (MiB)", rss_full)):
        print(f"{name:<42} {value:>12.1f}")
    print(f"sqlite_accepts_vs_sync: {med['sqlite'] / med['sync']:.2f} (target 0.5)")
    print(f"p99_202_ms_at_1000_per_s: {p99:.1f} (target 10)")
    print(f"completions_vs_sync: {completions / med['sync']:.2f} (target 0.5)")
    print(f"nats_accepts_vs_sync: {med['nats'] / med['sync']:.2f} (target 0.3)")
    print(f"rss_queued_vs_empty: {rss_full / rss_empty:.2f} (target ~1.0: no growth)")


if __name__ == "__main__":
    main()
